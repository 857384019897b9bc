// KDSVD through the C API of libkdfuse_sim: golden data (2 to 4 layers, tall and wide Grams of odd order and of
// order 1, k = 1 and 2, N = 1 .. 3, student and teacher maps of different h, repeated singular values, zero,
// dead-unit and non-finite samples, RepDistiller's resnet32x4 shapes), the output contract per layer (accumulate,
// NULL outputs, one layer's gradient NULL), grad_scale, strided and misaligned maps, launch and cuBLAS-call
// counts, determinism, the workspace, bad inputs.
#include "common/loss_test.h"
#include "common/simt_runs.h"
#include "simt/simt_expect.h"

#include <gmock/gmock.h>

#include <memory>

namespace {

using kdftest::DeviceBuffer;
using kdftest::GoldenCase;
using ::testing::HasSubstr;

// One device buffer per layer.
using Layers = std::vector<std::unique_ptr<DeviceBuffer<float>>>;

Layers upload(const std::vector<std::vector<float>>& maps)
{
    Layers out;
    for (const auto& m : maps) out.push_back(std::make_unique<DeviceBuffer<float>>(m));
    return out;
}

// Zero-filled buffers of the sizes of `maps`.
Layers zeros_like(const std::vector<std::vector<float>>& maps)
{
    Layers out;
    for (const auto& m : maps) out.push_back(std::make_unique<DeviceBuffer<float>>(std::vector<float>(m.size(), 0.0f)));
    return out;
}

// The host array of device pointers the call takes (`const void*` for the maps, `void*` for the gradients).
template <typename T>
std::vector<T*> pointers(const Layers& layers)
{
    std::vector<T*> out;
    for (const auto& b : layers) out.push_back(b->get());
    return out;
}

bool all_finite(const std::vector<float>& v)
{
    return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

// Elements [sample * per_sample, (sample + 1) * per_sample) of a dense map are all exactly 0.
bool sample_is_zero(const std::vector<float>& v, int64_t sample, int64_t per_sample)
{
    return std::all_of(v.begin() + sample * per_sample, v.begin() + (sample + 1) * per_sample, [](float x) { return x == 0.0f; });
}

class KDSVD : public kdftest::LossTest {
protected:
    struct Case {
        kdfKDSVDParams_t params = KDF_KDSVD_PARAMS_INIT;
        std::vector<std::vector<float>> s, t;  // per layer, dense
        std::vector<float> grad_loss;          // one per pair, or empty (NULL)
        float grad_scale = 1.0f;
        std::vector<double> loss;              // one per pair
        std::vector<std::vector<double>> grad; // per layer
        int layers() const { return params.num_layers; }
    };

    static Case load(const GoldenCase& g)
    {
        Case c;
        c.params.num_layers = static_cast<int>(g.number("layers"));
        c.params.k = static_cast<int>(g.number("k"));
        c.params.gap_rtol = static_cast<float>(g.number("gap_rtol"));
        c.params.weight = static_cast<float>(g.number("weight"));
        c.grad_scale = static_cast<float>(g.number("grad_scale"));
        for (int l = 0; l < c.layers(); ++l) {
            const std::string i = std::to_string(l);
            const auto s = g.load("s" + i), t = g.load("t" + i);
            c.params.student[l] = kdftest::dense_map(s);
            c.params.teacher[l] = kdftest::dense_map(t);
            c.s.push_back(s.as_float());
            c.t.push_back(t.as_float());
            c.grad.push_back(g.load("grad_s" + i).values);
        }
        if (g.has("grad_loss")) c.grad_loss = g.load("grad_loss").as_float();
        c.loss = g.load("loss").values;
        return c;
    }

    size_t workspace(const kdfKDSVDParams_t& p) { return kdftest::workspace_size(kdfKDSVDWorkspaceSize, p); }

    // The call with the case's grad_loss and grad_scale and a workspace of the size the query gives.
    kdfStatus_t run(const Case& c, const kdfKDSVDParams_t& p, const void* const* f_s, const void* const* f_t, float* loss,
                    void* const* grad_s, int accumulate)
    {
        DeviceBuffer<float> gl(c.grad_loss);
        DeviceBuffer<unsigned char> ws(workspace(p));
        return kdfKDSVD(handle, &p, f_s, f_t, loss, grad_s, c.grad_loss.empty() ? nullptr : gl.get(), c.grad_scale, accumulate,
                        ws.get(), ws.size(), stream);
    }

    // The case's maps on the device with zeroed gradients and a loss buffer.
    struct OnDevice {
        Layers s, t, grad;
        DeviceBuffer<float> loss;
        explicit OnDevice(const Case& c) : s(upload(c.s)), t(upload(c.t)), grad(zeros_like(c.s)), loss(c.loss.size()) {}
    };

    // Runs the case with every output requested, not accumulating, and checks the outputs against the golden ones.
    void expect_golden(const Case& c, OnDevice& d)
    {
        ASSERT_EQ(run(c, c.params, pointers<const void>(d.s).data(), pointers<const void>(d.t).data(), d.loss.get(),
                      pointers<void>(d.grad).data(), 0),
                  KDF_STATUS_SUCCESS)
            << kdfGetLastErrorString();
        EXPECT_CLOSE(d.loss.download(), c.loss, "loss");
        for (int l = 0; l < c.layers(); ++l) EXPECT_CLOSE(d.grad[l]->download(), c.grad[l], "grad_s[" + std::to_string(l) + "]");
    }
};

TEST_F(KDSVD, GoldenCasesFromTheReference)
{
    const auto cases = kdftest::golden_cases("kdsvd");
    ASSERT_GE(cases.size(), 10u) << "golden data missing under " << kdftest::golden_root();
    for (const auto& g : cases) {
        SCOPED_TRACE("case " + g.name);
        const Case c = load(g);
        OnDevice d(c);
        expect_golden(c, d);
    }
}

TEST_F(KDSVD, EigensolverEdgeCasesAreAmongTheGoldenCases)
{
    // GoldenCasesFromTheReference checks their values: Grams of order 1 (C = 1; h*w = 1) and of odd order (C = 5 and
    // 7; a wide 12 x 3 x 3 map: 9), repeated singular values outside the used ones, zero singular values (dead
    // channels, a dead pixel), samples without vectors (zero or non-finite maps), a zero teacher sample.
    const Case one = load(kdftest::find_case("kdsvd", "n2_k1_order1_grams"));
    EXPECT_EQ(one.params.student[1].c, 1);
    EXPECT_EQ(one.params.student[2].h * one.params.student[2].w, 1);
    const Case odd = load(kdftest::find_case("kdsvd", "n1_k1_tall_c5_c7"));
    EXPECT_EQ(odd.params.student[0].c, 5);
    EXPECT_EQ(odd.params.student[1].c, 7);
    const Case wide = load(kdftest::find_case("kdsvd", "n2_k2_wide_tall_wide_weighted"));
    EXPECT_EQ(wide.params.student[0].h * wide.params.student[0].w, 9);
    EXPECT_GT(wide.params.student[0].c, 9);
    for (const char* name : {"n2_k1_repeated_values_outside_used", "n2_k1_dead_channels_and_pixel", "n3_k1_zero_student_sample",
                             "n3_k2_nonfinite_samples", "n2_k2_zero_teacher_sample"})
        kdftest::find_case("kdsvd", name);
}

TEST_F(KDSVD, OutputContractPerLayer)
{
    // For each layer alone (the other layers' gradients NULL): loss and gradient, accumulated, loss only, gradient
    // only. The loss-only call passes an array of NULL gradients; grad_s itself NULL is checked below.
    for (const char* name : {"n2_k2_wide_tall_wide_weighted", "n3_k1_student_teacher_h_differ", "n2_k1_order1_grams"}) {
        const Case c = load(kdftest::find_case("kdsvd", name));
        OnDevice d(c);
        for (int l = 0; l < c.layers(); ++l) {
            SCOPED_TRACE(std::string(name) + ", gradient of layer " + std::to_string(l));
            kdftest::check_outputs(
                [&](float* loss, float* grad, int acc) {
                    std::vector<void*> grads(c.layers(), nullptr);
                    grads[l] = grad;
                    return run(c, c.params, pointers<const void>(d.s).data(), pointers<const void>(d.t).data(), loss,
                               grads.data(), acc);
                },
                d.loss, *d.grad[l], c.loss, c.grad[l]);
        }
    }
}

TEST_F(KDSVD, AccumulateAddsTheLossAndEveryGradient)
{
    const Case c = load(kdftest::find_case("kdsvd", "n2_k2_wide_tall_wide_weighted"));
    OnDevice d(c);
    expect_golden(c, d);
    ASSERT_EQ(run(c, c.params, pointers<const void>(d.s).data(), pointers<const void>(d.t).data(), d.loss.get(),
                  pointers<void>(d.grad).data(), 1),
              KDF_STATUS_SUCCESS);
    auto twice = [](std::vector<double> v) {
        for (double& x : v) x *= 2.0;
        return v;
    };
    EXPECT_CLOSE(d.loss.download(), twice(c.loss), "accumulated loss");
    for (int l = 0; l < c.layers(); ++l)
        EXPECT_CLOSE(d.grad[l]->download(), twice(c.grad[l]), "accumulated grad_s[" + std::to_string(l) + "]");
}

TEST_F(KDSVD, NullGradientArrayAndOneLayersGradientNull)
{
    const Case c = load(kdftest::find_case("kdsvd", "n2_k2_wide_tall_wide_weighted"));
    OnDevice d(c);
    const auto fs = pointers<const void>(d.s), ft = pointers<const void>(d.t);
    // grad_s NULL: the loss alone.
    ASSERT_EQ(run(c, c.params, fs.data(), ft.data(), d.loss.get(), nullptr, 0), KDF_STATUS_SUCCESS);
    EXPECT_CLOSE(d.loss.download(), c.loss, "loss without grad_s");
    // The middle layer's gradient NULL: the others as golden, the middle one untouched.
    d.loss.upload(std::vector<float>(c.loss.size(), -7.0f));
    std::vector<void*> grads = pointers<void>(d.grad);
    grads[1] = nullptr;
    ASSERT_EQ(run(c, c.params, fs.data(), ft.data(), nullptr, grads.data(), 0), KDF_STATUS_SUCCESS);
    EXPECT_CLOSE(d.grad[0]->download(), c.grad[0], "grad_s[0]");
    EXPECT_CLOSE(d.grad[2]->download(), c.grad[2], "grad_s[2]");
    EXPECT_TRUE(sample_is_zero(d.grad[1]->download(), 0, static_cast<int64_t>(c.s[1].size()))) << "grad_s[1] untouched";
    EXPECT_THAT(d.loss.download(), ::testing::Each(-7.0f)) << "loss untouched";
}

TEST_F(KDSVD, GradScaleMultipliesTheGradientsOnly)
{
    const Case c = load(kdftest::find_case("kdsvd", "n3_k1_student_teacher_h_differ"));
    OnDevice d(c);
    expect_golden(c, d);
    const auto loss = d.loss.download();
    std::vector<std::vector<float>> grads;
    for (const auto& g : d.grad) grads.push_back(g->download());
    Case quarter = c;
    quarter.grad_scale = c.grad_scale * 0.25f;
    ASSERT_EQ(run(quarter, c.params, pointers<const void>(d.s).data(), pointers<const void>(d.t).data(), d.loss.get(),
                  pointers<void>(d.grad).data(), 0),
              KDF_STATUS_SUCCESS);
    EXPECT_TRUE(kdftest::bitwise_equal(d.loss.download(), loss)) << "the loss does not depend on grad_scale";
    for (int l = 0; l < c.layers(); ++l) {
        std::vector<float> want = grads[l];
        for (float& x : want) x *= 0.25f;  // a power of two: exact
        EXPECT_TRUE(kdftest::bitwise_equal(d.grad[l]->download(), want)) << "grad_s[" << l << "] scaled by 1/4";
    }
}

TEST_F(KDSVD, StridedMisalignedMapsGiveTheDenseResults)
{
    // Channels and samples padded beyond dense (stride_c > h*w, stride_n > c * stride_c), pointers 4 bytes off a
    // 16-byte boundary; the gradients in the student's layout. Wide and tall layers of both networks.
    // Bitwise here: kdfuse's own kernels take the strides as values (one code path), and the SIMT cuBLAS sums in
    // one order for every leading dimension. On a GPU cuBLAS may pick another algorithm for another leading
    // dimension or alignment, so there the layouts agree to rounding (docs/api.md, Determinism).
    const Case c = load(kdftest::find_case("kdsvd", "n2_k2_wide_tall_wide_weighted"));
    OnDevice dense(c);
    expect_golden(c, dense);
    const int64_t layouts[][6] = {{3, 5, 1, 2, 7, 0}, {1, 0, 0, 4, 1, 1}};  // student pad_c, pad_n, offset; teacher
    for (const auto& lay : layouts) {
        SCOPED_TRACE("layout " + std::to_string(lay[0]) + "," + std::to_string(lay[1]) + "," + std::to_string(lay[2]) + " / " +
                     std::to_string(lay[3]) + "," + std::to_string(lay[4]) + "," + std::to_string(lay[5]));
        kdfKDSVDParams_t p = c.params;
        std::vector<kdftest::Strided> s, t;
        std::vector<std::vector<float>> s_buffers, t_buffers;
        for (int l = 0; l < c.layers(); ++l) {
            s.emplace_back(c.s[l], c.params.student[l], lay[0], lay[1], lay[2]);
            t.emplace_back(c.t[l], c.params.teacher[l], lay[3], lay[4], lay[5]);
            p.student[l] = s.back().map, p.teacher[l] = t.back().map;
            s_buffers.push_back(s.back().buffer), t_buffers.push_back(t.back().buffer);
        }
        const Layers ds = upload(s_buffers), dt = upload(t_buffers), dg = zeros_like(s_buffers);
        std::vector<const void*> fs, ft;
        std::vector<void*> grads;
        for (int l = 0; l < c.layers(); ++l) {
            fs.push_back(ds[l]->get() + lay[2]);
            ft.push_back(dt[l]->get() + lay[5]);
            grads.push_back(dg[l]->get() + lay[2]);
        }
        DeviceBuffer<float> loss(c.loss.size());
        ASSERT_EQ(run(c, p, fs.data(), ft.data(), loss.get(), grads.data(), 0), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
        EXPECT_TRUE(kdftest::bitwise_equal(loss.download(), dense.loss.download())) << "loss";
        for (int l = 0; l < c.layers(); ++l) {
            const auto g = dg[l]->download();
            EXPECT_TRUE(kdftest::bitwise_equal(s[l].extract(g), dense.grad[l]->download())) << "grad_s[" << l << "]";
            if (lay[0] > 0) EXPECT_EQ(g[lay[2] + p.student[l].h * p.student[l].w], 0.0f) << "channel padding of grad_s untouched";
        }
    }
}

TEST_F(KDSVD, LaunchAndGemmCountsNoSyncAndBitwiseReproducible)
{
    // 2 L Gram GEMMs; the Jacobi and the per-sample kernels, with a gradient the gradient kernel; a requested loss
    // also zeroes its ticket (a memset, not counted: pinned by the invalid-stream check of BadInputs).
    const Case c = load(kdftest::find_case("kdsvd", "n2_k2_wide_tall_wide_weighted"));
    OnDevice d(c);
    DeviceBuffer<unsigned char> ws(workspace(c.params));
    DeviceBuffer<float> gl(c.grad_loss);
    const auto fs = pointers<const void>(d.s), ft = pointers<const void>(d.t);
    auto call = [&](float* loss, void* const* grads) {
        kdfuse::simt::reset_counters();
        EXPECT_EQ(kdfKDSVD(handle, &c.params, fs.data(), ft.data(), loss, grads, gl.get(), c.grad_scale, 0, ws.get(), ws.size(),
                           stream),
                  KDF_STATUS_SUCCESS);
    };
    const auto grads = pointers<void>(d.grad);
    std::vector<std::vector<float>> runs;
    kdftest::for_each_schedule([&] {
        for (int repeat = 0; repeat < 2; ++repeat) {
            call(d.loss.get(), grads.data());
            EXPECT_CALL_WORK(3u, 6u);
            runs.push_back(kdftest::concat({d.loss.download(), d.grad[0]->download(), d.grad[1]->download(), d.grad[2]->download()}));
        }
    });
    ASSERT_EQ(runs.size(), 6u);
    for (size_t i = 1; i < runs.size(); ++i) EXPECT_TRUE(kdftest::bitwise_equal(runs[0], runs[i])) << "run " << i;
    call(d.loss.get(), nullptr);
    EXPECT_CALL_WORK(2u, 6u);
    call(nullptr, grads.data());
    EXPECT_CALL_WORK(3u, 6u);
    const std::vector<void*> last_only = {nullptr, nullptr, grads[2]};
    call(nullptr, last_only.data());
    EXPECT_CALL_WORK(3u, 6u);
    const std::vector<void*> none = {nullptr, nullptr, nullptr};
    call(nullptr, none.data());
    EXPECT_CALL_WORK(0u, 0u);
    call(nullptr, nullptr);
    EXPECT_CALL_WORK(0u, 0u);
}

TEST_F(KDSVD, SamplesWithoutVectorsGetNoGradient)
{
    // A zero student sample (layer 0, sample 1) and non-finite samples (NaN in student layer 0 sample 0, +inf in
    // teacher layer 1 sample 2, -inf in student layer 2 sample 1): the golden values are the reference's with those
    // maps' U, S, V zeroed. Every output is finite, those student samples get exactly zero gradients, and a
    // non-finite map acts exactly as a zero map.
    {
        const Case c = load(kdftest::find_case("kdsvd", "n3_k1_zero_student_sample"));
        OnDevice d(c);
        expect_golden(c, d);
        const auto& m = c.params.student[0];
        EXPECT_TRUE(sample_is_zero(d.grad[0]->download(), 1, m.c * m.h * m.w));
    }
    const Case c = load(kdftest::find_case("kdsvd", "n3_k2_nonfinite_samples"));
    OnDevice d(c);
    expect_golden(c, d);
    EXPECT_TRUE(all_finite(d.loss.download()));
    std::vector<std::vector<float>> grads;
    for (const auto& g : d.grad) {
        grads.push_back(g->download());
        EXPECT_TRUE(all_finite(grads.back()));
    }
    auto per_sample = [](const kdfFeatureMap_t& m) { return m.c * m.h * m.w; };
    EXPECT_TRUE(sample_is_zero(grads[0], 0, per_sample(c.params.student[0])));
    EXPECT_TRUE(sample_is_zero(grads[2], 1, per_sample(c.params.student[2])));

    // The same maps with each of those three samples zero instead.
    Case zeroed = c;
    auto zero = [&](std::vector<float>& map, const kdfFeatureMap_t& m, int64_t sample) {
        std::fill_n(map.begin() + sample * per_sample(m), per_sample(m), 0.0f);
    };
    zero(zeroed.s[0], c.params.student[0], 0);
    zero(zeroed.t[1], c.params.teacher[1], 2);
    zero(zeroed.s[2], c.params.student[2], 1);
    OnDevice z(zeroed);
    ASSERT_EQ(run(zeroed, c.params, pointers<const void>(z.s).data(), pointers<const void>(z.t).data(), z.loss.get(),
                  pointers<void>(z.grad).data(), 0),
              KDF_STATUS_SUCCESS);
    EXPECT_TRUE(kdftest::bitwise_equal(z.loss.download(), d.loss.download())) << "loss";
    for (int l = 0; l < c.layers(); ++l) EXPECT_TRUE(kdftest::bitwise_equal(z.grad[l]->download(), grads[l])) << "grad_s[" << l << "]";
}

TEST_F(KDSVD, WorkspaceDependsOnlyOnTheParams)
{
    // resnet32x4 at N = 64: the Jacobi bases (doubles) of every Gram: beside an order-128 Gram only bases up to
    // order 63 fit in the 98 KiB of shared memory every device allows (a call on a device that allows more keeps
    // the order-64 bases on chip and leaves their part of the workspace unused); Grams of order 64, 128 and 64 (the 256x8x8 layer is wide: h*w = 64) per network
    // and sample, their eigenvalues; per sample and layer (k + 4) + 11 C floats of vectors (k = 1); the (L - 1) N
    // loss partials with their ticket; the 4 MiB cuBLAS slice. Strides change nothing.
    kdfKDSVDParams_t p = KDF_KDSVD_PARAMS_INIT;
    p.num_layers = 3;
    p.student[0] = {64, 64, 32, 32, 0, 0}, p.student[1] = {64, 128, 16, 16, 0, 0}, p.student[2] = {64, 256, 8, 8, 0, 0};
    for (int l = 0; l < 3; ++l) p.teacher[l] = p.student[l];
    const size_t bases = 64u * 2 * (64 * 64 + 128 * 128 + 64 * 64) * 8;
    const size_t grams = 64u * 2 * (64 * 64 + 128 * 128 + 64 * 64) * 4, values = 64u * 2 * (64 + 128 + 64) * 4;
    const size_t vectors = 64u * (3 * 5 + 11 * (64 + 128 + 256)) * 4, partials = 2 * 64 * 4 + 256;
    EXPECT_EQ(workspace(p), bases + grams + values + vectors + partials + (size_t(4) << 20));
    kdfKDSVDParams_t strided = p;
    strided.student[1].stride_c = 300, strided.student[1].stride_n = 128 * 300 + 9;
    strided.teacher[2].stride_c = 70, strided.teacher[2].stride_n = 256 * 70;
    EXPECT_EQ(workspace(strided), workspace(p));
    // k = 2: (k + 4) + 16 C floats of vectors (a_s, a_t, dL/da of two vectors; five student vectors and their y).
    p.k = 2;
    const size_t vectors2 = 64u * (3 * 6 + 16 * (64 + 128 + 256)) * 4;
    EXPECT_EQ(workspace(p), bases + grams + values + vectors2 + partials + (size_t(4) << 20));
    // Without the order-128 layer every basis fits in shared memory.
    p.num_layers = 2, p.student[1] = p.student[2], p.teacher[1] = p.teacher[2];
    const size_t vectors3 = 64u * (2 * 6 + 16 * (64 + 256)) * 4, partials3 = 64 * 4 + 256;
    EXPECT_EQ(workspace(p), 64u * 2 * (64 * 64 + 64 * 64) * 4 + 64u * 2 * (64 + 64) * 4 + vectors3 + partials3 + (size_t(4) << 20));
    // Two layers of 90 x 10 x 10 maps: Grams of order 90, whose bases fit in shared memory beside them within the
    // 99 KiB every device lets a block opt in to; at order 91 they do not, and go to the workspace.
    for (const int ch : {90, 91}) {
        p.k = 1, p.num_layers = 2;
        p.student[0] = p.student[1] = p.teacher[0] = p.teacher[1] = {64, ch, 10, 10, 0, 0};
        const size_t n2 = size_t(ch) * ch, sides = 64u * 2 * 2;
        const size_t bases_n = ch == 91 ? sides * n2 * 8 : 0;
        const size_t vectors_n = 64u * (2 * 5 + 11 * 2 * ch) * 4;
        EXPECT_EQ(workspace(p), bases_n + sides * n2 * 4 + sides * ch * 4 + vectors_n + partials3 + (size_t(4) << 20))
            << "order " << ch;
    }
    // The call refuses a workspace one byte short.
    const Case c = load(kdftest::find_case("kdsvd", "n1_k1_tall_c5_c7"));
    OnDevice d(c);
    const size_t bytes = workspace(c.params);
    DeviceBuffer<unsigned char> ws(bytes);
    EXPECT_STATUS(kdfKDSVD(handle, &c.params, pointers<const void>(d.s).data(), pointers<const void>(d.t).data(), d.loss.get(),
                           nullptr, nullptr, 1.0f, 0, ws.get(), bytes - 1, stream),
                  KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes is " + std::to_string(bytes - 1));
}

TEST_F(KDSVD, BadInputs)
{
    // Two layers, N = 2: a tall student with a wide teacher of another h, then two tall 5 x 3 x 3 maps.
    kdfKDSVDParams_t good = KDF_KDSVD_PARAMS_INIT;
    good.num_layers = 2;
    good.student[0] = {2, 3, 4, 4, 0, 0}, good.teacher[0] = {2, 3, 1, 1, 0, 0};
    good.student[1] = {2, 5, 3, 3, 0, 0}, good.teacher[1] = good.student[1];
    DeviceBuffer<float> s0(96), t0(6), s1(90), t1(90), loss(1), g0(96), g1(90), gl(1);
    for (auto* b : {&s0, &t0, &s1, &t1}) b->upload(kdftest::uniform(b->size(), static_cast<unsigned>(b->size())));
    DeviceBuffer<unsigned char> ws(workspace(good));
    // The arguments of one call; an empty f_s, f_t or grads is passed as NULL.
    struct Args {
        kdfHandle_t handle;
        kdfKDSVDParams_t params;
        std::vector<const void*> fs, ft;
        float* loss;
        std::vector<void*> grads;
        const float* grad_loss;
        float grad_scale;
        void* ws;
        size_t ws_bytes;
        cudaStream_t stream;
    };
    const Args base{handle, good, {s0.get(), s1.get()}, {t0.get(), t1.get()}, loss.get(), {g0.get(), g1.get()}, gl.get(), 1.0f,
                    ws.get(), ws.size(), stream};
    auto call = [](const Args& a) {
        return kdfKDSVD(a.handle, &a.params, a.fs.empty() ? nullptr : a.fs.data(), a.ft.empty() ? nullptr : a.ft.data(), a.loss,
                        a.grads.empty() ? nullptr : a.grads.data(), a.grad_loss, a.grad_scale, 0, a.ws, a.ws_bytes, a.stream);
    };
    // Params refused alike by the size query and the call.
    auto refused = [&](const kdfKDSVDParams_t& p, kdfStatus_t want, const std::string& needle) {
        size_t bytes = 0;
        EXPECT_STATUS(kdfKDSVDWorkspaceSize(&p, &bytes), want, "kdfKDSVDWorkspaceSize: " + needle);
        Args a = base;
        a.params = p;
        EXPECT_STATUS(call(a), want, "kdfKDSVD: " + needle);
    };
    kdfKDSVDParams_t p = good;
    for (int layers : {0, 1, 9}) {
        p = good, p.num_layers = layers;
        refused(p, KDF_STATUS_INVALID_VALUE, "params->num_layers must be in [2, 8]");
    }
    for (int k : {0, 9}) {
        p = good, p.k = k;
        refused(p, KDF_STATUS_INVALID_VALUE, "params->k must be in [1, 8]");
    }
    p = good, p.k = 4;
    refused(p, KDF_STATUS_INVALID_VALUE, "params->k (4) exceeds params->teacher[0].c");
    p = good, p.k = 2;  // teacher[0] is 3 x 1 x 1: one vector
    refused(p, KDF_STATUS_INVALID_VALUE, "params->k (2) exceeds params->teacher[0].h * w");
    for (float rtol : {-1e-3f, NAN, 1.0f}) {
        p = good, p.gap_rtol = rtol;
        refused(p, KDF_STATUS_INVALID_VALUE, "params->gap_rtol must be in [0, 1)");
    }
    p = good, p.weight = NAN;
    refused(p, KDF_STATUS_INVALID_VALUE, "params->weight");
    p = good, p.dtype = KDF_DTYPE_FP16;
    refused(p, KDF_STATUS_NOT_SUPPORTED, "params->dtype: fp16");
    p = good, p.dtype = static_cast<kdfDataType_t>(7);
    refused(p, KDF_STATUS_INVALID_VALUE, "params->dtype");
    p = good, p.student[1].w = 4, p.teacher[1].w = 4;
    refused(p, KDF_STATUS_NOT_SUPPORTED, "params->student[1] is 3 x 4: KDSVD takes square maps");
    p = good, p.teacher[0].h = 2;
    refused(p, KDF_STATUS_NOT_SUPPORTED, "params->teacher[0] is 2 x 1");
    p = good, p.student[1] = {2, 129, 12, 12, 0, 0}, p.teacher[1] = {2, 129, 11, 11, 0, 0};
    refused(p, KDF_STATUS_NOT_SUPPORTED, "params->student[1]: min(c, h*w) must be <= 128 (the order of the Gram decomposed "
                                         "on chip), got c = 129, h*w = 144");
    std::swap(p.student[1], p.teacher[1]);
    refused(p, KDF_STATUS_NOT_SUPPORTED, "params->teacher[1]: min(c, h*w) must be <= 128");
    p = good, p.teacher[1].c = 4;
    refused(p, KDF_STATUS_SHAPE_MISMATCH, "params->student[1].c (5) != params->teacher[1].c (4)");
    p = good, p.student[1].n = 3, p.teacher[1].n = 3;
    refused(p, KDF_STATUS_SHAPE_MISMATCH, "params->student[0].n (2) != params->student[1].n (3)");
    p = good, p.teacher[0].n = 1;
    refused(p, KDF_STATUS_SHAPE_MISMATCH, "params->student[0].n (2) != params->teacher[0].n (1)");
    p = good, p.student[1].h = 0;
    refused(p, KDF_STATUS_INVALID_VALUE, "params->student[1].h");
    p = good, p.teacher[0].stride_c = -1;
    refused(p, KDF_STATUS_INVALID_VALUE, "params->teacher[0].stride_c");
    p = good, p.student[0].stride_c = int64_t(1) << 32, p.student[0].stride_n = 3 * (int64_t(1) << 32);
    refused(p, KDF_STATUS_NOT_SUPPORTED, "channel counts, h*w and channel strides must be < 2^31");
    // Valid maps whose workspace sums would overflow int64 (n * c near 2^57: 1 x 1 maps) or whose gradient grid
    // would exceed 2^31 - 1 blocks: refused before any size arithmetic.
    p = good;
    for (int l = 0; l < 2; ++l) p.student[l] = p.teacher[l] = kdfFeatureMap_t{int64_t(1) << 26, 2147483647, 1, 1, 0, 0};
    refused(p, KDF_STATUS_NOT_SUPPORTED, "channel counts, h*w and channel strides must be < 2^31");
    p = good;
    for (int l = 0; l < 2; ++l) p.student[l] = p.teacher[l] = kdfFeatureMap_t{int64_t(1) << 24, 1, 128, 128, 0, 0};
    refused(p, KDF_STATUS_NOT_SUPPORTED, "channel counts, h*w and channel strides must be < 2^31");
    p = good, p.struct_size = 8;
    refused(p, KDF_STATUS_INVALID_VALUE, "params->struct_size is 8");
    size_t bytes = 0;
    EXPECT_STATUS(kdfKDSVDWorkspaceSize(nullptr, &bytes), KDF_STATUS_NULL_POINTER, "params is NULL");
    EXPECT_STATUS(kdfKDSVDWorkspaceSize(&good, nullptr), KDF_STATUS_NULL_POINTER, "bytes");
    // The largest supported Grams: min(c, h*w) = 128 either way.
    p = good, p.student[1] = {2, 128, 12, 12, 0, 0}, p.teacher[1] = {2, 128, 16, 16, 0, 0};
    p.student[0] = {2, 128, 8, 8, 0, 0}, p.teacher[0] = {2, 128, 1, 1, 0, 0};
    EXPECT_EQ(kdfKDSVDWorkspaceSize(&p, &bytes), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();

    Args a = base;
    a.fs = {};
    EXPECT_STATUS(call(a), KDF_STATUS_NULL_POINTER, "f_s is NULL");
    a = base, a.ft = {};
    EXPECT_STATUS(call(a), KDF_STATUS_NULL_POINTER, "f_t is NULL");
    a = base, a.fs[1] = nullptr;
    EXPECT_STATUS(call(a), KDF_STATUS_NULL_POINTER, "f_s[1] is NULL");
    a = base, a.ft[0] = nullptr;
    EXPECT_STATUS(call(a), KDF_STATUS_NULL_POINTER, "f_t[0] is NULL");
    auto bytes_off = [](const void* ptr, int n) { return static_cast<const char*>(ptr) + n; };
    a = base, a.fs[0] = bytes_off(s0.get(), 1);
    EXPECT_STATUS(call(a), KDF_STATUS_MISALIGNED_POINTER, "f_s[0] is not 4-byte aligned");
    a = base, a.ft[1] = bytes_off(t1.get(), 2);
    EXPECT_STATUS(call(a), KDF_STATUS_MISALIGNED_POINTER, "f_t[1] is not 4-byte aligned");
    a = base, a.grads[1] = const_cast<char*>(bytes_off(g1.get(), 3));
    EXPECT_STATUS(call(a), KDF_STATUS_MISALIGNED_POINTER, "grad_s[1] is not 4-byte aligned");
    a = base, a.loss = reinterpret_cast<float*>(const_cast<char*>(bytes_off(loss.get(), 1)));
    EXPECT_STATUS(call(a), KDF_STATUS_MISALIGNED_POINTER, "loss is not 4-byte aligned");
    a = base, a.grad_loss = reinterpret_cast<const float*>(bytes_off(gl.get(), 2));
    EXPECT_STATUS(call(a), KDF_STATUS_MISALIGNED_POINTER, "grad_loss is not 4-byte aligned");
    a = base, a.grad_scale = NAN;
    EXPECT_STATUS(call(a), KDF_STATUS_INVALID_VALUE, "grad_scale");
    a = base, a.ws_bytes = ws.size() - 16;
    EXPECT_STATUS(call(a), KDF_STATUS_WORKSPACE_TOO_SMALL, "workspace_bytes");
    a = base, a.ws = nullptr;
    EXPECT_STATUS(call(a), KDF_STATUS_NULL_POINTER, "workspace is NULL");
    DeviceBuffer<unsigned char> ws_big(ws.size() + 16);
    a = base, a.ws = ws_big.get() + 8;
    EXPECT_STATUS(call(a), KDF_STATUS_MISALIGNED_POINTER, "workspace is not 16-byte aligned");

    // Aliasing: a written buffer may share no byte with another argument.
    a = base, a.loss = const_cast<float*>(static_cast<const float*>(base.fs[0]));
    EXPECT_STATUS(call(a), KDF_STATUS_INVALID_VALUE, "loss overlaps f_s[0]");
    a = base, a.loss = gl.get();
    EXPECT_STATUS(call(a), KDF_STATUS_INVALID_VALUE, "loss overlaps grad_loss");
    a = base, a.grads[1] = t1.get();
    EXPECT_STATUS(call(a), KDF_STATUS_INVALID_VALUE, "grad_s[1] overlaps f_t[1]");
    a = base, a.grads[0] = g1.get();
    EXPECT_STATUS(call(a), KDF_STATUS_INVALID_VALUE, "grad_s[0] overlaps grad_s[1]");
    a = base, a.grads[0] = ws.get() + 1024;
    EXPECT_STATUS(call(a), KDF_STATUS_INVALID_VALUE, "grad_s[0] overlaps workspace");
    a = base, a.fs[1] = t1.get();  // inputs may overlap
    EXPECT_EQ(call(a), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();

    a = base, a.handle = nullptr;
    EXPECT_STATUS(call(a), KDF_STATUS_NULL_POINTER, "handle");
    a = base;
    ASSERT_EQ(kdfCreate(&a.handle), KDF_STATUS_SUCCESS);
    ASSERT_EQ(kdfDestroy(a.handle), KDF_STATUS_SUCCESS);
    EXPECT_STATUS(call(a), KDF_STATUS_INVALID_VALUE, "not a live kdfHandle_t");
    {
        // Work the runtime rejects (an invalid stream) is an error status, not a crash: with the loss the ticket's
        // memset is the first thing issued (a CUDA error), without it the first Gram GEMM (a cuBLAS error).
        kdftest::ExpectSimtError simt_error;
        a = base, a.stream = reinterpret_cast<cudaStream_t>(0x4321);
        EXPECT_STATUS(call(a), KDF_STATUS_CUDA_ERROR, "kdfKDSVD: cudaErrorInvalidResourceHandle");
        a.loss = nullptr;
        EXPECT_STATUS(call(a), KDF_STATUS_CUBLAS_ERROR, "kdfKDSVD: CUBLAS_STATUS_EXECUTION_FAILED");
        ASSERT_EQ(simt_error.messages().size(), 2u);
        EXPECT_THAT(simt_error.messages()[0], HasSubstr("cudaMemset"));
        EXPECT_THAT(simt_error.messages()[1], HasSubstr("cuBLAS GEMM"));
    }
    EXPECT_EQ(call(base), KDF_STATUS_SUCCESS) << kdfGetLastErrorString();
    EXPECT_STREQ(kdfGetLastErrorString(), "");
}

}  // namespace
