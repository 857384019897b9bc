// The table of entry points (entry_points.h): one builder per loss.
#include "entry_points.h"

#include <cstring>
#include <stdexcept>
#include <utility>

namespace kdftest {
namespace {

constexpr size_t F = sizeof(float);

int64_t draw(Rng& r, int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(r() % static_cast<uint64_t>(hi - lo + 1)); }
bool coin(Rng& r) { return (r() & 1) != 0; }
float drawf(Rng& r, float lo, float hi) { return lo + (hi - lo) * static_cast<float>(r() % 1000000) / 1e6f; }

// Byte extents as the API defines them (kdfuse.h: "Aliasing").
size_t rows_bytes(int64_t rows, int64_t cols, int64_t ld, size_t element)
{
    return static_cast<size_t>((rows - 1) * (ld ? ld : cols) + cols) * element;
}
size_t map_bytes(const kdfFeatureMap_t& m)
{
    const int64_t sc = m.stride_c ? m.stride_c : m.h * m.w, sn = m.stride_n ? m.stride_n : m.c * m.h * m.w;
    return static_cast<size_t>((m.n - 1) * sn + (m.c - 1) * sc + m.h * m.w) * F;
}

// A valid n x c x h x w map, dense or with padded channel and sample strides.
kdfFeatureMap_t random_map(Rng& r, int64_t n, int64_t c, int64_t h, int64_t w)
{
    kdfFeatureMap_t m = {n, c, h, w, 0, 0};
    if (coin(r)) m.stride_c = h * w + draw(r, 0, 3);
    if (m.stride_c != 0 || coin(r)) m.stride_n = (c - 1) * (m.stride_c ? m.stride_c : h * w) + h * w + draw(r, 0, 3);
    return m;
}
int64_t random_ld(Rng& r, int64_t dim) { return coin(r) ? 0 : dim + draw(r, 0, 3); }

template <typename P>
Entry entry(const char* name, const P& p)
{
    Entry e;
    e.name = name;
    e.params = std::make_shared<P>(p);
    e.params_size = sizeof(P);
    e.fields.push_back({Field::U64, 0, "struct_size"});
    return e;
}

void map_fields(Entry& e, size_t base, const std::string& prefix)
{
    const char* names[] = {"n", "c", "h", "w", "stride_n", "stride_c"};
    for (size_t i = 0; i < 6; ++i) e.fields.push_back({Field::I64, base + i * sizeof(int64_t), prefix + "." + names[i]});
}

Buffer in(std::string name, size_t bytes, size_t align = F) { return {std::move(name), bytes, align, false, true}; }
Buffer opt_in(Rng& r, bool random, std::string name, size_t bytes)
{
    Buffer b{std::move(name), bytes, F, false, false};
    b.present = !random || coin(r);
    return b;
}
Buffer out(Rng& r, bool random, std::string name, size_t bytes, size_t align = F)
{
    Buffer b{std::move(name), bytes, align, true, false, Fill::Zero};
    b.present = !random || coin(r);
    return b;
}
Buffer workspace(size_t bytes) { return {"workspace", bytes, 16, true, bytes > 0, Fill::Zero}; }

template <typename P>
size_t query_bytes(kdfStatus_t (*query)(const P*, size_t*), const Entry& e)
{
    size_t bytes = 0;
    if (query(&e.as<P>(), &bytes) != KDF_STATUS_SUCCESS) throw std::logic_error(e.name + ": generated params are invalid");
    return bytes;
}

template <typename P>
void set_query(Entry& e, kdfStatus_t (*query)(const P*, size_t*))
{
    auto params = e.params;
    e.query = [params, query](size_t* bytes) { return query(static_cast<const P*>(params.get()), bytes); };
}

float* f(void* p) { return static_cast<float*>(p); }

// s, t, grad_loss, loss, grad_s, workspace: the calls with one student gradient (FitNet, AT, FT, AB, NST, SP,
// PKT, RKD).
template <typename P>
Entry student_teacher(Rng& r, bool random, const char* name, const P& p, const char* s_name, size_t s_bytes,
                      const char* t_name, size_t t_bytes, kdfStatus_t (*query)(const P*, size_t*),
                      kdfStatus_t (*fn)(kdfHandle_t, const P*, const void*, const void*, float*, void*, const float*, float,
                                        int, void*, size_t, kdfStream_t))
{
    Entry e = entry(name, p);
    set_query(e, query);
    e.has_grad_scale = true;
    e.buffers = {in(s_name, s_bytes), in(t_name, t_bytes), opt_in(r, random, "grad_loss", F), out(r, random, "loss", F),
                 out(r, random, "grad_s", s_bytes), workspace(query_bytes(query, e))};
    const int acc = random && coin(r);
    auto params = e.params;
    e.call = [params, fn, acc](kdfHandle_t h, const Pointers& b, size_t w, float scale, kdfStream_t s) {
        return fn(h, static_cast<const P*>(params.get()), b[0], b[1], f(b[3]), b[4], f(b[2]), scale, acc, b[5], w, s);
    };
    return e;
}

#define KDF_FIELD(P, type, member) Field{Field::type, offsetof(P, member), #member}

void add_kd(std::vector<Entry>& out_list, Rng& r, bool random)
{
    kdfKDParams_t p = KDF_KD_PARAMS_INIT;
    p.rows = draw(r, 1, 5), p.classes = draw(r, 1, 40);
    p.ld_student = random_ld(r, p.classes), p.ld_teacher = random_ld(r, p.classes);
    p.dtype = static_cast<kdfDataType_t>(draw(r, 0, 2));
    p.temperature = drawf(r, 0.5f, 8.0f);
    p.reduction = coin(r) ? KDF_REDUCTION_NONE : KDF_REDUCTION_BATCHMEAN;
    Entry e = entry("kdfKD", p);
    e.fields.insert(e.fields.end(), {KDF_FIELD(kdfKDParams_t, I64, rows), KDF_FIELD(kdfKDParams_t, I64, classes),
                                     KDF_FIELD(kdfKDParams_t, I64, ld_student), KDF_FIELD(kdfKDParams_t, I64, ld_teacher),
                                     KDF_FIELD(kdfKDParams_t, Enum, dtype), KDF_FIELD(kdfKDParams_t, F32, temperature),
                                     KDF_FIELD(kdfKDParams_t, Enum, reduction)});
    set_query(e, kdfKDWorkspaceSize);
    e.has_grad_scale = true;
    const size_t el = p.dtype == KDF_DTYPE_FP32 ? 4 : 2, per_row = p.reduction == KDF_REDUCTION_NONE ? p.rows * F : F;
    const size_t s_bytes = rows_bytes(p.rows, p.classes, p.ld_student, el), t_bytes = rows_bytes(p.rows, p.classes, p.ld_teacher, el);
    e.buffers = {in("y_s", s_bytes, el), in("y_t", t_bytes, el), opt_in(r, random, "row_weight", p.rows * F),
                 opt_in(r, random, "grad_loss", per_row), out(r, random, "loss", per_row), out(r, random, "grad_s", s_bytes, el),
                 out(r, random, "grad_t", t_bytes, el), workspace(query_bytes(kdfKDWorkspaceSize, e))};
    e.buffers[0].element_bytes = e.buffers[1].element_bytes = el;
    const int acc = random && coin(r);
    auto params = e.params;
    e.call = [params, acc](kdfHandle_t h, const Pointers& b, size_t w, float scale, kdfStream_t s) {
        return kdfKD(h, static_cast<const kdfKDParams_t*>(params.get()), b[0], b[1], f(b[2]), f(b[4]), b[5], b[6], f(b[3]), scale,
                     acc, b[7], w, s);
    };
    out_list.push_back(std::move(e));
}

// FitNet, AB, OFD: two maps of one shape.
template <typename P>
P same_shape_maps(Rng& r, P p)
{
    const int64_t n = draw(r, 1, 3), c = draw(r, 1, 5), h = draw(r, 1, 6), w = draw(r, 1, 6);
    p.student = random_map(r, n, c, h, w);
    p.teacher = random_map(r, n, c, h, w);
    return p;
}

// AT, FT, NST: same n, channels may differ, one map at least as large as the other in h and w.
template <typename P>
P pooled_maps(Rng& r, P p)
{
    const int64_t n = draw(r, 1, 3), h = draw(r, 1, 5), w = draw(r, 1, 5);
    const bool student_larger = coin(r);
    const int64_t H = student_larger || coin(r) ? h + draw(r, 0, 4) : h, W = H == h ? w : w + draw(r, 0, 4);
    p.student = random_map(r, n, draw(r, 1, 5), student_larger ? H : h, student_larger ? W : w);
    p.teacher = random_map(r, n, draw(r, 1, 5), student_larger ? h : H, student_larger ? w : W);
    return p;
}

template <typename P>
void student_teacher_map_fields(Entry& e)
{
    map_fields(e, offsetof(P, student), "student");
    map_fields(e, offsetof(P, teacher), "teacher");
    e.fields.push_back(KDF_FIELD(P, Enum, dtype));
}

// A student-teacher call on two feature maps (FitNet, AT, FT, AB, NST): its entry, the maps' fields and `extra`.
template <typename P>
void add_maps(std::vector<Entry>& list, Rng& r, bool random, const char* name, const P& p, const char* s_name,
              const char* t_name, kdfStatus_t (*query)(const P*, size_t*),
              kdfStatus_t (*fn)(kdfHandle_t, const P*, const void*, const void*, float*, void*, const float*, float, int,
                                void*, size_t, kdfStream_t),
              std::initializer_list<Field> extra)
{
    Entry e = student_teacher(r, random, name, p, s_name, map_bytes(p.student), t_name, map_bytes(p.teacher), query, fn);
    student_teacher_map_fields<P>(e);
    e.fields.insert(e.fields.end(), extra);
    list.push_back(std::move(e));
}

void add_feature_maps(std::vector<Entry>& list, Rng& r, bool random)
{
    {
        kdfFitNetParams_t p = same_shape_maps(r, kdfFitNetParams_t KDF_FITNET_PARAMS_INIT);
        p.weight = drawf(r, -2.0f, 2.0f);
        add_maps(list, r, random, "kdfFitNet", p, "f_s", "f_t", kdfFitNetWorkspaceSize, kdfFitNet,
                 {KDF_FIELD(kdfFitNetParams_t, F32, weight)});
    }
    {
        kdfATParams_t p = pooled_maps(r, kdfATParams_t KDF_AT_PARAMS_INIT);
        p.p = drawf(r, 0.5f, 3.0f);
        add_maps(list, r, random, "kdfAT", p, "f_s", "f_t", kdfATWorkspaceSize, kdfAT,
                 {KDF_FIELD(kdfATParams_t, F32, p), KDF_FIELD(kdfATParams_t, F32, weight)});
    }
    {
        kdfFTParams_t p = pooled_maps(r, kdfFTParams_t KDF_FT_PARAMS_INIT);
        p.p2 = coin(r) ? 1.0f : 2.0f;
        add_maps(list, r, random, "kdfFT", p, "f_s", "f_t", kdfFTWorkspaceSize, kdfFT,
                 {KDF_FIELD(kdfFTParams_t, F32, p1), KDF_FIELD(kdfFTParams_t, F32, p2)});
    }
    {
        kdfABParams_t p = same_shape_maps(r, kdfABParams_t KDF_AB_PARAMS_INIT);
        p.margin = drawf(r, 0.0f, 2.0f), p.seed_scaling = coin(r);
        add_maps(list, r, random, "kdfAB", p, "s", "t", kdfABWorkspaceSize, kdfAB,
                 {KDF_FIELD(kdfABParams_t, F32, margin), KDF_FIELD(kdfABParams_t, Flag, seed_scaling)});
    }
    {
        kdfNSTParams_t p = pooled_maps(r, kdfNSTParams_t KDF_NST_PARAMS_INIT);
        p.full_loss = coin(r);
        add_maps(list, r, random, "kdfNST", p, "f_s", "f_t", kdfNSTWorkspaceSize, kdfNST,
                 {KDF_FIELD(kdfNSTParams_t, Flag, full_loss)});
    }
    {
        kdfOFDParams_t p = same_shape_maps(r, kdfOFDParams_t KDF_OFD_PARAMS_INIT);
        p.variant = coin(r) ? KDF_OFD_ORIGINAL : KDF_OFD_SEED;
        Entry e = entry("kdfOFD", p);
        student_teacher_map_fields<kdfOFDParams_t>(e);
        e.fields.push_back(KDF_FIELD(kdfOFDParams_t, Enum, variant));
        set_query(e, kdfOFDWorkspaceSize);
        e.has_grad_scale = true;
        const size_t s_bytes = map_bytes(p.student);
        Buffer margin = in("margin", p.student.c * F);
        margin.present = margin.required = p.variant == KDF_OFD_ORIGINAL;
        e.buffers = {in("s", s_bytes), in("t", map_bytes(p.teacher)), margin, opt_in(r, random, "grad_loss", F),
                     out(r, random, "loss", F), out(r, random, "grad_s", s_bytes), workspace(query_bytes(kdfOFDWorkspaceSize, e))};
        const int acc = random && coin(r);
        auto params = e.params;
        e.call = [params, acc](kdfHandle_t h, const Pointers& b, size_t w, float scale, kdfStream_t s) {
            return kdfOFD(h, static_cast<const kdfOFDParams_t*>(params.get()), b[0], b[1], f(b[2]), f(b[4]), b[5], f(b[3]), scale,
                          acc, b[6], w, s);
        };
        list.push_back(std::move(e));
    }
    {
        struct Channels {
            size_t struct_size;  // not part of the C call: keeps the Field list's first entry meaningful
            int64_t channels;
        };
        const Channels p{sizeof(Channels), draw(r, 5, 9)};
        Entry e = entry("kdfOFDMarginFromBN", p);
        e.fields = {{Field::I64, offsetof(Channels, channels), "channels"}};
        const size_t bytes = p.channels * F;
        e.buffers = {in("gamma", bytes), in("beta", bytes), {"margin", bytes, F, true, true, Fill::Zero}};
        auto params = e.params;
        e.call = [params](kdfHandle_t h, const Pointers& b, size_t, float, kdfStream_t s) {
            return kdfOFDMarginFromBN(h, static_cast<const Channels*>(params.get())->channels, f(b[0]), f(b[1]), f(b[2]), s);
        };
        list.push_back(std::move(e));
    }
    {
        kdfVIDParams_t p = KDF_VID_PARAMS_INIT;
        const int64_t n = draw(r, 1, 3), c = draw(r, 1, 5), h = draw(r, 1, 5), w = draw(r, 1, 5);
        p.pred = random_map(r, n, c, h, w);
        p.target = random_map(r, n, c, h + draw(r, 0, 3), w + draw(r, 0, 3));
        p.eps = drawf(r, 1e-6f, 1e-3f);
        Entry e = entry("kdfVID", p);
        map_fields(e, offsetof(kdfVIDParams_t, pred), "pred");
        map_fields(e, offsetof(kdfVIDParams_t, target), "target");
        e.fields.insert(e.fields.end(), {KDF_FIELD(kdfVIDParams_t, Enum, dtype), KDF_FIELD(kdfVIDParams_t, F32, eps),
                                         KDF_FIELD(kdfVIDParams_t, F32, weight)});
        set_query(e, kdfVIDWorkspaceSize);
        e.has_grad_scale = true;
        const size_t p_bytes = map_bytes(p.pred);
        e.buffers = {in("pred_mean", p_bytes), in("target", map_bytes(p.target)), in("log_scale", c * F),
                     opt_in(r, random, "grad_loss", F), out(r, random, "loss", F), out(r, random, "grad_pred", p_bytes),
                     out(r, random, "grad_log_scale", c * F), workspace(query_bytes(kdfVIDWorkspaceSize, e))};
        const int acc = random && coin(r);
        auto params = e.params;
        e.call = [params, acc](kdfHandle_t h, const Pointers& b, size_t w, float scale, kdfStream_t s) {
            return kdfVID(h, static_cast<const kdfVIDParams_t*>(params.get()), b[0], b[1], f(b[2]), f(b[4]), b[5], f(b[6]),
                          f(b[3]), scale, acc, b[7], w, s);
        };
        list.push_back(std::move(e));
    }
    {
        kdfFSPParams_t p = KDF_FSP_PARAMS_INIT;
        const int64_t n = draw(r, 1, 3), c1 = draw(r, 1, 4), c2 = draw(r, 1, 4);
        for (auto [bot, top] : {std::pair{&p.student_bot, &p.student_top}, std::pair{&p.teacher_bot, &p.teacher_top}}) {
            const int64_t h = draw(r, 1, 5), w = draw(r, 1, 5), H = h + draw(r, 0, 3), W = w + draw(r, 0, 3);
            const bool bot_larger = coin(r);
            *bot = random_map(r, n, c1, bot_larger ? H : h, bot_larger ? W : w);
            *top = random_map(r, n, c2, bot_larger ? h : H, bot_larger ? w : W);
        }
        Entry e = entry("kdfFSP", p);
        map_fields(e, offsetof(kdfFSPParams_t, student_bot), "student_bot");
        map_fields(e, offsetof(kdfFSPParams_t, student_top), "student_top");
        map_fields(e, offsetof(kdfFSPParams_t, teacher_bot), "teacher_bot");
        map_fields(e, offsetof(kdfFSPParams_t, teacher_top), "teacher_top");
        set_query(e, kdfFSPWorkspaceSize);
        e.has_grad_scale = true;
        const size_t sb = map_bytes(p.student_bot), st = map_bytes(p.student_top);
        e.buffers = {in("s_bot", sb), in("s_top", st), in("t_bot", map_bytes(p.teacher_bot)), in("t_top", map_bytes(p.teacher_top)),
                     opt_in(r, random, "grad_loss", F), out(r, random, "loss", F), out(r, random, "grad_s_bot", sb),
                     out(r, random, "grad_s_top", st), workspace(query_bytes(kdfFSPWorkspaceSize, e))};
        const int acc = random && coin(r);
        auto params = e.params;
        e.call = [params, acc](kdfHandle_t h, const Pointers& b, size_t w, float scale, kdfStream_t s) {
            return kdfFSP(h, static_cast<const kdfFSPParams_t*>(params.get()), b[0], b[1], b[2], b[3], f(b[5]), b[6], b[7], f(b[4]),
                          scale, acc, b[8], w, s);
        };
        list.push_back(std::move(e));
    }
}

template <typename P>
P random_rows(Rng& r, P p, int64_t max_rows)
{
    p.rows = draw(r, 1, max_rows), p.dim_student = draw(r, 1, 10), p.dim_teacher = draw(r, 1, 10);
    p.ld_student = random_ld(r, p.dim_student), p.ld_teacher = random_ld(r, p.dim_teacher);
    return p;
}

template <typename P>
void row_fields(Entry& e)
{
    e.fields.insert(e.fields.end(), {KDF_FIELD(P, I64, rows), KDF_FIELD(P, I64, dim_student), KDF_FIELD(P, I64, dim_teacher),
                                     KDF_FIELD(P, I64, ld_student), KDF_FIELD(P, I64, ld_teacher), KDF_FIELD(P, Enum, dtype)});
}

template <typename P>
Entry rows_entry(Rng& r, bool random, const char* name, const P& p, const char* s_name, const char* t_name,
                 kdfStatus_t (*query)(const P*, size_t*),
                 kdfStatus_t (*fn)(kdfHandle_t, const P*, const void*, const void*, float*, void*, const float*, float, int,
                                   void*, size_t, kdfStream_t))
{
    Entry e = student_teacher(r, random, name, p, s_name, rows_bytes(p.rows, p.dim_student, p.ld_student, F), t_name,
                              rows_bytes(p.rows, p.dim_teacher, p.ld_teacher, F), query, fn);
    row_fields<P>(e);
    return e;
}

void add_rows(std::vector<Entry>& list, Rng& r, bool random)
{
    list.push_back(rows_entry(r, random, "kdfSP", random_rows(r, kdfSPParams_t KDF_SP_PARAMS_INIT, 6), "f_s", "f_t",
                              kdfSPWorkspaceSize, kdfSP));
    list.push_back(rows_entry(r, random, "kdfPKT", random_rows(r, kdfPKTParams_t KDF_PKT_PARAMS_INIT, 6), "f_s", "f_t",
                              kdfPKTWorkspaceSize, kdfPKT));
    list.push_back(rows_entry(r, random, "kdfRKD", random_rows(r, kdfRKDParams_t KDF_RKD_PARAMS_INIT, 5), "e_s", "e_t",
                              kdfRKDWorkspaceSize, kdfRKD));
    {
        kdfCCParams_t p = random_rows(r, kdfCCParams_t KDF_CC_PARAMS_INIT, 6);
        p.variant = coin(r) ? KDF_CC_REPDISTILLER : KDF_CC_SEED;
        if (p.variant == KDF_CC_REPDISTILLER) p.dim_teacher = p.dim_student, p.ld_teacher = random_ld(r, p.dim_student);
        Entry e = entry("kdfCC", p);
        row_fields<kdfCCParams_t>(e);
        e.fields.push_back(KDF_FIELD(kdfCCParams_t, Enum, variant));
        set_query(e, kdfCCWorkspaceSize);
        e.has_grad_scale = true;
        const size_t s_bytes = rows_bytes(p.rows, p.dim_student, p.ld_student, F);
        const size_t t_bytes = rows_bytes(p.rows, p.dim_teacher, p.ld_teacher, F);
        Buffer grad_t = out(r, random, "grad_t", t_bytes);
        grad_t.present = grad_t.present && p.variant == KDF_CC_REPDISTILLER;
        e.buffers = {in("f_s", s_bytes), in("f_t", t_bytes), opt_in(r, random, "grad_loss", F), out(r, random, "loss", F),
                     out(r, random, "grad_s", s_bytes), grad_t, workspace(query_bytes(kdfCCWorkspaceSize, e))};
        const int acc = random && coin(r);
        auto params = e.params;
        e.call = [params, acc](kdfHandle_t h, const Pointers& b, size_t w, float scale, kdfStream_t s) {
            return kdfCC(h, static_cast<const kdfCCParams_t*>(params.get()), b[0], b[1], f(b[3]), b[4], b[5], f(b[2]), scale, acc,
                         b[6], w, s);
        };
        list.push_back(std::move(e));
    }
}

Buffer indices(std::string name, int64_t count, size_t index_bytes, int64_t n_data)
{
    Buffer b{std::move(name), static_cast<size_t>(count) * index_bytes, index_bytes, false, true, Fill::Index};
    b.element_bytes = index_bytes;
    b.index_limit = n_data;
    return b;
}

void add_crd(std::vector<Entry>& list, Rng& r, bool random)
{
    kdfCRDParams_t p = KDF_CRD_PARAMS_INIT;
    p.rows = draw(r, 1, 4), p.dim = draw(r, 1, 40), p.k = draw(r, 1, 20), p.n_data = draw(r, 1, 30);
    p.ld_student = random_ld(r, p.dim), p.ld_teacher = random_ld(r, p.dim);
    p.index_type = coin(r) ? KDF_INDEX_INT32 : KDF_INDEX_INT64;
    p.temperature = drawf(r, 0.05f, 1.0f), p.momentum = drawf(r, 0.0f, 1.0f);
    p.z_mode = coin(r) ? KDF_CRD_Z_EMA : KDF_CRD_Z_ONCE, p.z_momentum = drawf(r, 0.0f, 1.0f);
    p.normalize_inputs = coin(r), p.update_memory = coin(r), p.draw_contrast = coin(r);
    p.seed = r(), p.offset = r();
    using P = kdfCRDParams_t;
    Entry e = entry("kdfCRD", p);
    e.fields.insert(e.fields.end(),
                    {KDF_FIELD(P, I64, rows), KDF_FIELD(P, I64, dim), KDF_FIELD(P, I64, ld_student), KDF_FIELD(P, I64, ld_teacher),
                     KDF_FIELD(P, I64, n_data), KDF_FIELD(P, I64, k), KDF_FIELD(P, Enum, dtype), KDF_FIELD(P, Enum, index_type),
                     KDF_FIELD(P, F32, temperature), KDF_FIELD(P, F32, momentum), KDF_FIELD(P, Enum, z_mode),
                     KDF_FIELD(P, F32, z_momentum), KDF_FIELD(P, Flag, normalize_inputs), KDF_FIELD(P, Flag, update_memory),
                     KDF_FIELD(P, Flag, draw_contrast), KDF_FIELD(P, U64, seed), KDF_FIELD(P, U64, offset),
                     KDF_FIELD(P, F32, weight)});
    set_query(e, kdfCRDWorkspaceSize);
    e.has_grad_scale = true;
    const size_t ib = p.index_type == KDF_INDEX_INT64 ? 8 : 4, bank = p.n_data * p.dim * F;
    const size_t s_bytes = rows_bytes(p.rows, p.dim, p.ld_student, F), t_bytes = rows_bytes(p.rows, p.dim, p.ld_teacher, F);
    Buffer idx = indices("idx", p.rows, ib, p.n_data), cidx = indices("contrast_idx", p.rows * (p.k + 1), ib, p.n_data);
    idx.required = p.update_memory || p.draw_contrast;
    idx.present = idx.required || !random || coin(r);
    cidx.required = cidx.present = !p.draw_contrast;
    Buffer status = out(r, random, "index_status", 4, 4);
    e.buffers = {in("v_s", s_bytes), in("v_t", t_bytes), {"memory_s", bank, F, true, true}, {"memory_t", bank, F, true, true},
                 idx, cidx, {"z", 2 * F, F, true, true}, status, out(r, random, "loss", F), out(r, random, "grad_s", s_bytes),
                 out(r, random, "grad_t", t_bytes), opt_in(r, random, "grad_loss", F),
                 workspace(query_bytes(kdfCRDWorkspaceSize, e))};
    const int acc = random && coin(r);
    auto params = e.params;
    e.call = [params, acc](kdfHandle_t h, const Pointers& b, size_t w, float scale, kdfStream_t s) {
        return kdfCRD(h, static_cast<const P*>(params.get()), b[0], b[1], b[2], b[3], b[4], b[5], f(b[6]),
                      static_cast<int32_t*>(b[7]), f(b[8]), b[9], b[10], f(b[11]), scale, acc, b[12], w, s);
    };
    list.push_back(std::move(e));

    Entry d = entry("kdfCRDDrawContrast", p);
    d.fields = e.fields;
    d.buffers = {indices("idx", p.rows, ib, p.n_data), {"contrast_idx", p.rows * (p.k + 1) * ib, ib, true, true, Fill::Zero}};
    d.call = [params = d.params](kdfHandle_t h, const Pointers& b, size_t, float, kdfStream_t s) {
        return kdfCRDDrawContrast(h, static_cast<const P*>(params.get()), b[0], b[1], s);
    };
    list.push_back(std::move(d));
}

// KDSVD: L layers of square student and teacher maps (same n; same c per layer; the teacher with k <= min(c, h*w)).
// The host arrays of device pointers the call takes (f_s, f_t, grad_s) are assembled from one buffer per map and
// gradient, KDF_KDSVD_MAX_LAYERS long (NULL beyond the layers) so that a mutated num_layers reads no further; grad_s
// is NULL when no gradient is present.
void add_kdsvd(std::vector<Entry>& list, Rng& r, bool random)
{
    using P = kdfKDSVDParams_t;
    P p = KDF_KDSVD_PARAMS_INIT;
    p.num_layers = static_cast<int>(draw(r, 2, 3));
    p.k = static_cast<int>(draw(r, 1, 2));
    p.gap_rtol = drawf(r, 0.0f, 1e-3f);
    p.weight = drawf(r, -2.0f, 2.0f);
    const int64_t n = draw(r, 1, 3);
    for (int l = 0; l < p.num_layers; ++l) {
        const int64_t c = draw(r, p.k, 6), hs = draw(r, 1, 4), ht = draw(r, p.k, 4);
        p.student[l] = random_map(r, n, c, hs, hs);
        p.teacher[l] = random_map(r, n, c, ht, ht);
    }
    Entry e = entry("kdfKDSVD", p);
    e.fields.insert(e.fields.end(), {KDF_FIELD(P, I32, num_layers), KDF_FIELD(P, Enum, dtype), KDF_FIELD(P, I32, k),
                                     KDF_FIELD(P, F32, gap_rtol), KDF_FIELD(P, F32, weight)});
    const int layers = p.num_layers;
    for (int l = 0; l < layers; ++l) {
        const std::string i = "[" + std::to_string(l) + "]";
        map_fields(e, offsetof(P, student) + l * sizeof(kdfFeatureMap_t), "student" + i);
        map_fields(e, offsetof(P, teacher) + l * sizeof(kdfFeatureMap_t), "teacher" + i);
    }
    set_query(e, kdfKDSVDWorkspaceSize);
    e.has_grad_scale = true;
    for (int l = 0; l < layers; ++l) e.buffers.push_back(in("f_s[" + std::to_string(l) + "]", map_bytes(p.student[l])));
    for (int l = 0; l < layers; ++l) e.buffers.push_back(in("f_t[" + std::to_string(l) + "]", map_bytes(p.teacher[l])));
    const size_t pairs = (layers - 1) * F;
    e.buffers.push_back(opt_in(r, random, "grad_loss", pairs));
    e.buffers.push_back(out(r, random, "loss", pairs));
    for (int l = 0; l < layers; ++l) e.buffers.push_back(out(r, random, "grad_s[" + std::to_string(l) + "]", map_bytes(p.student[l])));
    e.buffers.push_back(workspace(query_bytes(kdfKDSVDWorkspaceSize, e)));
    const int acc = random && coin(r);
    auto params = e.params;
    e.call = [params, acc, layers](kdfHandle_t h, const Pointers& b, size_t w, float scale, kdfStream_t s) {
        const void* f_s[KDF_KDSVD_MAX_LAYERS] = {};
        const void* f_t[KDF_KDSVD_MAX_LAYERS] = {};
        void* grad_s[KDF_KDSVD_MAX_LAYERS] = {};
        bool any_grad = false;
        for (int l = 0; l < layers; ++l) {
            f_s[l] = b[l], f_t[l] = b[layers + l], grad_s[l] = b[2 * layers + 2 + l];
            any_grad = any_grad || grad_s[l] != nullptr;
        }
        return kdfKDSVD(h, static_cast<const P*>(params.get()), f_s, f_t, f(b[2 * layers + 1]), any_grad ? grad_s : nullptr,
                        f(b[2 * layers]), scale, acc, b[3 * layers + 2], w, s);
    };
    list.push_back(std::move(e));
}

}  // namespace

int Entry::workspace_index() const
{
    return !buffers.empty() && buffers.back().name == "workspace" ? static_cast<int>(buffers.size()) - 1 : -1;
}

std::vector<unsigned char> host_values(const Buffer& b, Rng& rng)
{
    std::vector<unsigned char> bytes(b.bytes, 0);
    if (b.fill == Fill::Index) {
        for (size_t i = 0; i + b.element_bytes <= b.bytes; i += b.element_bytes) {
            const int64_t v = draw(rng, 0, b.index_limit - 1);
            if (b.element_bytes == 8) std::memcpy(&bytes[i], &v, 8);
            else {
                const int32_t v32 = static_cast<int32_t>(v);
                std::memcpy(&bytes[i], &v32, 4);
            }
        }
    } else if (b.fill == Fill::Float && b.element_bytes == 4) {
        for (size_t i = 0; i + 4 <= b.bytes; i += 4) {
            const float v = drawf(rng, -1.0f, 1.0f);
            std::memcpy(&bytes[i], &v, 4);
        }
    } else if (b.fill == Fill::Float) {
        // 16-bit: bit patterns finite (and of modest size) both as fp16 and as bf16.
        const uint16_t patterns[] = {0x0000, 0x3c00, 0xbc00, 0x3800, 0xb800, 0x3a00, 0x3e00, 0xbe00};
        for (size_t i = 0; i + 2 <= b.bytes; i += 2) std::memcpy(&bytes[i], &patterns[rng() % 8], 2);
    }
    return bytes;
}

std::vector<Entry> entry_points(Rng& rng, bool optional_at_random)
{
    std::vector<Entry> list;
    add_kd(list, rng, optional_at_random);
    add_feature_maps(list, rng, optional_at_random);
    add_rows(list, rng, optional_at_random);
    add_crd(list, rng, optional_at_random);
    add_kdsvd(list, rng, optional_at_random);
    return list;
}

}  // namespace kdftest
