// The SIMT scheduler: one fiber per CUDA thread, blocks run one after another on the calling OS
// thread, fibers interleaved only at barriers and warp-synchronous operations.
//
// A block runs in rounds. In each round every runnable thread, in schedule order, runs until it
// blocks (at __syncthreads or at a warp operation whose other lanes have not arrived) or exits.
// A warp operation completes when the last lane named by its mask arrives: that lane computes every
// lane's result (true lock-step semantics) and continues; the others become runnable. When no thread
// is runnable, either every live thread waits at the same __syncthreads call site and the barrier
// opens, or the block is stuck and the reason is reported (divergent barrier, a warp mask naming a lane
// that exited or waits elsewhere). Errors abort the block: each suspended fiber is resumed once, sees
// the abort flag and unwinds its kernel frames with an exception that the fiber's main loop catches,
// so fibers and their stacks stay pooled.
#include "state.h"

#include <boost/context/fiber.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define KDFUSE_SIMT_ASAN 1
#endif

namespace ctx = boost::context;

namespace kdfuse::simt {
namespace detail {

thread_local ThreadState* tl_thread = nullptr;
thread_local BlockState tl_block{};

namespace {

struct Abort {};  // unwinds a thread's kernel frames when its block is aborted

enum class LaneState { Ready, AtBarrier, AtWarpOp, Done };

struct Lane {
    ctx::fiber fiber;  // the suspended thread (empty while it runs or before its first run)
    ctx::fiber sched;  // the scheduler, while this thread runs
    ThreadState state{};
    int linear = 0;
    LaneState status = LaneState::Done;
    bool started = false;
    // barrier
    std::source_location site{};
    int predicate = 0;
    // warp operation
    int group = -1;
    uint64_t warp_result = 0;
    // AddressSanitizer fiber bookkeeping
    void* fake_stack = nullptr;
    const void* stack_bottom = nullptr;
    size_t stack_size = 0;
    const void* sched_bottom = nullptr;
    size_t sched_size = 0;
};

// Lanes of one warp that wait at one warp operation; lanes with disjoint masks form separate groups.
struct WarpGroup {
    bool active = false;
    WarpOp op{};
    unsigned mask = 0;
    unsigned arrived = 0;
    int width = 32;
    std::source_location site{};
    uint64_t value[32]{};
    int param[32]{};
};

size_t fiber_stack_bytes()
{
    if (const char* s = std::getenv("KDFUSE_SIMT_STACK_KB")) return size_t(std::max(16, std::atoi(s))) * 1024;
#if defined(KDFUSE_SIMT_ASAN)
    return 512 * 1024;
#else
    return 128 * 1024;
#endif
}

// Records each fiber's stack so the AddressSanitizer switch annotations can name it.
struct RecordingStack {
    ctx::protected_fixedsize_stack inner;
    Lane* lane;
    ctx::stack_context allocate()
    {
        ctx::stack_context sc = inner.allocate();
        lane->stack_bottom = static_cast<char*>(sc.sp) - sc.size;
        lane->stack_size = sc.size;
        return sc;
    }
    void deallocate(ctx::stack_context& sc) noexcept { inner.deallocate(sc); }
};

// The schedule named by KDFUSE_SIMT_SCHEDULE, read once. An invalid value is kept as `error`, and every launch
// is refused with it (until a test sets a schedule explicitly): the process neither aborts nor runs under a
// schedule nobody asked for.
struct ScheduleState {
    Schedule schedule = Schedule::Forward;
    uint64_t seed = 1;
    std::mt19937_64 rng{1};
    std::mutex mutex;
    std::string error;
    ScheduleState()
    {
        if (!parse_schedule(std::getenv("KDFUSE_SIMT_SCHEDULE"), schedule, seed, error)) schedule = Schedule::Forward;
        rng.seed(seed);
    }
};
ScheduleState& schedule_state()
{
    static ScheduleState s;
    return s;
}

std::string dim_string(unsigned x, unsigned y, unsigned z)
{
    return "(" + std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(z) + ")";
}

class Worker {
public:
    ~Worker()
    {
        // Let every pooled fiber leave its main loop so its stack is released cleanly.
        shutdown_ = true;
        for (auto& lane : lanes_)
            if (lane->fiber) resume(*lane);
    }

    cudaError_t run_grid(dim3 grid, dim3 block, size_t smem, Thunk thunk, void* closure, const std::string& where)
    {
        thunk_ = thunk;
        closure_ = closure;
        nthreads_ = static_cast<int>(block.x * block.y * block.z);
        while (static_cast<int>(lanes_.size()) < nthreads_) lanes_.push_back(std::make_unique<Lane>());
        groups_.assign((nthreads_ + 31) / 32, std::vector<WarpGroup>{});
        // Exact size (AddressSanitizer sees overruns); operator new aligns to 16 bytes on x86-64.
        std::unique_ptr<unsigned char[]> dynamic(smem ? new unsigned char[smem] : nullptr);
        for (int i = 0; i < nthreads_; ++i) {
            Lane& L = *lanes_[i];
            L.linear = i;
            L.state.thread_idx = {i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
        }
        const uint64_t nblocks = uint64_t(grid.x) * grid.y * grid.z;
        std::vector<uint64_t> block_order = order(nblocks);
        for (uint64_t b : block_order) {
            tl_block.grid_dim = grid;
            tl_block.block_dim = block;
            tl_block.block_idx = {unsigned(b % grid.x), unsigned((b / grid.x) % grid.y), unsigned(b / (uint64_t(grid.x) * grid.y))};
            tl_block.dynamic_smem = dynamic.get();
            tl_block.dynamic_bytes = smem;
            // Stale shared memory reads show up as NaN / -1.
            if (smem) std::memset(dynamic.get(), 0xFF, smem);
            if (!run_block(where)) {
                tl_block = BlockState{};
                return cudaErrorLaunchFailure;
            }
        }
        tl_block = BlockState{};
        return cudaSuccess;
    }

    // Called on a thread's own fiber.
    uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int param, int width, const std::source_location& where)
    {
        Lane& L = *current_;
        const int lane = L.linear % 32, warp = L.linear / 32;
        const int present = std::min(32, nthreads_ - warp * 32);
        const unsigned exists = present == 32 ? ~0u : ((1u << present) - 1u);
        const unsigned me = 1u << lane;
        if (mask & ~exists)
            fail_here("warp mask 0x" + hex(mask) + " names lanes that do not exist (this warp has " +
                          std::to_string(present) + " threads)",
                      where);
        if (!(mask & me)) fail_here("warp mask 0x" + hex(mask) + " does not include the calling lane", where);
        if (op <= WarpOp::ShflXor && (width < 1 || width > 32 || (width & (width - 1))))
            fail_here("shuffle width " + std::to_string(width) + " is not a power of two in [1, 32]", where);
        auto& groups = groups_[warp];
        WarpGroup* g = nullptr;
        for (auto& cand : groups)
            if (cand.active && (cand.mask & mask)) g = &cand;
        if (g && (g->mask != mask || g->op != op))
            fail_here("lanes of warp " + std::to_string(warp) + " disagree: a warp operation with mask 0x" +
                          hex(g->mask) + " waits at " + format_location(g->site) + " while this lane calls one with mask 0x" +
                          hex(mask) + " here",
                      where);
        if (g == nullptr) {
            for (auto& cand : groups)
                if (!cand.active) g = &cand;
            if (g == nullptr) g = &groups.emplace_back();
            g->active = true;
            g->op = op;
            g->mask = mask;
            g->arrived = 0;
            g->width = width;
            g->site = where;
        }
        for (unsigned m = mask & ~me; m; m &= m - 1) {
            const Lane& other = *lanes_[warp * 32 + std::countr_zero(m)];
            if (other.status == LaneState::Done)
                fail_here("warp mask 0x" + hex(mask) + " names lane " + std::to_string(other.linear % 32) +
                              ", which has exited",
                          where);
        }
        g->value[lane] = value;
        g->param[lane] = param;
        g->arrived |= me;
        if (g->arrived == g->mask) {
            complete(*g, warp);
            return L.warp_result;
        }
        L.status = LaneState::AtWarpOp;
        L.group = static_cast<int>(g - groups.data());
        block_on_scheduler(L);
        return L.warp_result;
    }

    int barrier(BarrierOp op, int predicate, const std::source_location& where)
    {
        Lane& L = *current_;
        L.status = LaneState::AtBarrier;
        L.site = where;
        L.predicate = predicate;
        barrier_op_ = op;
        block_on_scheduler(L);
        return barrier_result_;
    }

    [[noreturn]] void fail_here(const std::string& message, const std::source_location& where)
    {
        const Lane& L = *current_;
        fail(message + " at " + format_location(where) + ", block " + dim_string(tl_block.block_idx.x, tl_block.block_idx.y, tl_block.block_idx.z) +
             ", thread " + dim_string(L.state.thread_idx.x, L.state.thread_idx.y, L.state.thread_idx.z));
        throw Abort{};
    }

    bool inside_kernel() const { return current_ != nullptr; }

private:
    static std::string hex(unsigned v)
    {
        char buf[16];
        std::snprintf(buf, sizeof(buf), "%08x", v);
        return buf;
    }

    std::string thread_name(const Lane& L) const
    {
        return "thread " + dim_string(L.state.thread_idx.x, L.state.thread_idx.y, L.state.thread_idx.z);
    }

    void fail(const std::string& message)
    {
        aborting_ = true;
        report(cudaErrorLaunchFailure, message);
    }

    std::vector<uint64_t> order(uint64_t n)
    {
        std::vector<uint64_t> idx(n);
        std::iota(idx.begin(), idx.end(), uint64_t(0));
        ScheduleState& s = schedule_state();
        if (s.schedule == Schedule::Reverse) {
            std::reverse(idx.begin(), idx.end());
        } else if (s.schedule == Schedule::Random) {
            std::lock_guard<std::mutex> lock(s.mutex);
            std::shuffle(idx.begin(), idx.end(), s.rng);
        }
        return idx;
    }

    void complete(WarpGroup& g, int warp)
    {
        const int w = g.width;
        for (unsigned m = g.mask; m; m &= m - 1) {
            const int lane = std::countr_zero(m);
            Lane& L = *lanes_[warp * 32 + lane];
            uint64_t r = 0;
            switch (g.op) {
            case WarpOp::Shfl:
            case WarpOp::ShflUp:
            case WarpOp::ShflDown:
            case WarpOp::ShflXor: {
                const int base = lane & ~(w - 1), offset = lane & (w - 1), p = g.param[lane];
                int src = lane;
                if (g.op == WarpOp::Shfl) src = base + (((p % w) + w) % w);
                if (g.op == WarpOp::ShflUp && offset >= p) src = lane - p;
                if (g.op == WarpOp::ShflDown && offset + p < w) src = lane + p;
                if (g.op == WarpOp::ShflXor && (lane ^ p) < base + w) src = lane ^ p;
                // Reading a lane outside the mask is undefined on the GPU: return a poison value.
                r = (src >= 0 && src < 32 && (g.mask >> src & 1u)) ? g.value[src] : ~uint64_t(0);
                break;
            }
            case WarpOp::Ballot:
            case WarpOp::Any:
            case WarpOp::All: {
                unsigned ballot = 0;
                for (unsigned k = g.mask; k; k &= k - 1)
                    if (g.value[std::countr_zero(k)]) ballot |= 1u << std::countr_zero(k);
                r = g.op == WarpOp::Ballot ? ballot : g.op == WarpOp::Any ? (ballot != 0) : (ballot == g.mask);
                break;
            }
            case WarpOp::Sync: break;
            }
            L.warp_result = r;
            if (&L != current_) L.status = LaneState::Ready;
        }
        g.active = false;
    }

    static void lane_entry_annotate(Lane& L)
    {
#if defined(KDFUSE_SIMT_ASAN)
        __sanitizer_finish_switch_fiber(L.fake_stack, &L.sched_bottom, &L.sched_size);
#else
        (void)L;
#endif
    }

    // Switches from a thread's fiber to the scheduler and back.
    void switch_to_scheduler(Lane& L)
    {
#if defined(KDFUSE_SIMT_ASAN)
        __sanitizer_start_switch_fiber(&L.fake_stack, L.sched_bottom, L.sched_size);
#endif
        L.sched = std::move(L.sched).resume();
        lane_entry_annotate(L);
    }

    void block_on_scheduler(Lane& L)
    {
        switch_to_scheduler(L);
        if (aborting_) throw Abort{};
    }

    ctx::fiber lane_main(Lane& L, ctx::fiber&& sched)
    {
        L.sched = std::move(sched);
        lane_entry_annotate(L);
        while (!shutdown_) {
            if (!aborting_) {
                try {
                    thunk_(closure_);
                } catch (const Abort&) {
                }
            }
            L.status = LaneState::Done;
            switch_to_scheduler(L);  // parked until the next block (or shutdown)
        }
#if defined(KDFUSE_SIMT_ASAN)
        __sanitizer_start_switch_fiber(nullptr, L.sched_bottom, L.sched_size);
#endif
        return std::move(L.sched);
    }

    void resume(Lane& L)
    {
        if (!L.fiber) {
            L.fiber = ctx::fiber(std::allocator_arg, RecordingStack{ctx::protected_fixedsize_stack(fiber_stack_bytes()), &L},
                                 [this, &L](ctx::fiber&& sched) { return lane_main(L, std::move(sched)); });
        }
        Lane* previous = current_;
        current_ = &L;
        tl_thread = &L.state;
#if defined(KDFUSE_SIMT_ASAN)
        void* fake = nullptr;
        __sanitizer_start_switch_fiber(&fake, L.stack_bottom, L.stack_size);
#endif
        L.fiber = std::move(L.fiber).resume();
#if defined(KDFUSE_SIMT_ASAN)
        __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
        current_ = previous;
        tl_thread = previous ? &previous->state : nullptr;
    }

    bool run_block(const std::string& launch_site)
    {
        aborting_ = false;
        for (auto& g : groups_) g.clear();
        for (int i = 0; i < nthreads_; ++i) {
            lanes_[i]->status = LaneState::Ready;
            lanes_[i]->started = false;
        }
        for (;;) {
            bool ran = false;
            for (uint64_t i : order(static_cast<uint64_t>(nthreads_))) {
                Lane& L = *lanes_[i];
                if (L.status != LaneState::Ready) continue;
                ran = true;
                L.started = true;
                resume(L);
                if (aborting_) {
                    abort_block();
                    return false;
                }
            }
            if (ran) continue;
            if (std::all_of(lanes_.begin(), lanes_.begin() + nthreads_,
                            [](const auto& l) { return l->status == LaneState::Done; }))
                return true;
            if (!open_barrier_or_diagnose(launch_site)) {
                abort_block();
                return false;
            }
        }
    }

    // Every live thread is blocked. Opens the barrier when they all wait at the same __syncthreads;
    // otherwise reports why the block is stuck.
    bool open_barrier_or_diagnose(const std::string& launch_site)
    {
        const std::string block = "block " + dim_string(tl_block.block_idx.x, tl_block.block_idx.y, tl_block.block_idx.z);
        const Lane* at_barrier = nullptr;
        const Lane* exited = nullptr;
        for (int i = 0; i < nthreads_; ++i) {
            const Lane& L = *lanes_[i];
            if (L.status == LaneState::AtWarpOp) {
                const WarpGroup& g = groups_[L.linear / 32][L.group];
                for (unsigned m = g.mask & ~g.arrived; m; m &= m - 1) {
                    const Lane& missing = *lanes_[(L.linear / 32) * 32 + std::countr_zero(m)];
                    std::string where = missing.status == LaneState::Done        ? "has exited"
                                        : missing.status == LaneState::AtBarrier ? "waits at __syncthreads at " + format_location(missing.site)
                                                                                 : "waits at another warp operation";
                    fail("warp operation with mask 0x" + hex(g.mask) + " at " + format_location(g.site) + " never completes in " +
                         block + ": " + thread_name(L) + " waits for lane " + std::to_string(missing.linear % 32) +
                         ", which " + where + " (launched at " + launch_site + ")");
                    return false;
                }
            }
            if (L.status == LaneState::AtBarrier && at_barrier == nullptr) at_barrier = &L;
            if (L.status == LaneState::Done && exited == nullptr) exited = &L;
        }
        for (int i = 0; i < nthreads_; ++i) {
            const Lane& L = *lanes_[i];
            if (L.status != LaneState::AtBarrier) continue;
            if (L.site.line() != at_barrier->site.line() || L.site.column() != at_barrier->site.column() ||
                std::strcmp(L.site.file_name(), at_barrier->site.file_name()) != 0) {
                fail("divergent __syncthreads in " + block + ": " + thread_name(*at_barrier) + " waits at " +
                     format_location(at_barrier->site) + " but " + thread_name(L) + " waits at " + format_location(L.site) +
                     " (launched at " + launch_site + ")");
                return false;
            }
        }
        if (exited != nullptr) {
            fail("divergent __syncthreads in " + block + ": " + thread_name(*at_barrier) + " waits at " +
                 format_location(at_barrier->site) + " but " + thread_name(*exited) + " has exited (launched at " + launch_site + ")");
            return false;
        }
        int count = 0;
        for (int i = 0; i < nthreads_; ++i) count += lanes_[i]->predicate != 0;
        switch (barrier_op_) {
        case BarrierOp::Sync: barrier_result_ = 0; break;
        case BarrierOp::Count: barrier_result_ = count; break;
        case BarrierOp::And: barrier_result_ = count == nthreads_; break;
        case BarrierOp::Or: barrier_result_ = count != 0; break;
        }
        for (int i = 0; i < nthreads_; ++i) lanes_[i]->status = LaneState::Ready;
        return true;
    }

    // Unwinds every thread that is parked inside the kernel; the pool stays intact.
    void abort_block()
    {
        aborting_ = true;
        for (int i = 0; i < nthreads_; ++i) {
            Lane& L = *lanes_[i];
            if (L.status == LaneState::Done) continue;
            if (L.started) resume(L);
            L.status = LaneState::Done;
        }
        aborting_ = false;
    }

    std::vector<std::unique_ptr<Lane>> lanes_;
    std::vector<std::vector<WarpGroup>> groups_;
    int nthreads_ = 0;
    Thunk thunk_ = nullptr;
    void* closure_ = nullptr;
    Lane* current_ = nullptr;
    bool aborting_ = false;
    bool shutdown_ = false;
    BarrierOp barrier_op_ = BarrierOp::Sync;
    int barrier_result_ = 0;
};

Worker& worker()
{
    static thread_local Worker w;
    return w;
}

}  // namespace

uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int param, int width, const std::source_location& where)
{
    if (!worker().inside_kernel()) {
        report(cudaErrorLaunchFailure, "warp operation called outside a kernel at " + format_location(where));
        std::abort();
    }
    return worker().warp_op(op, mask, value, param, width, where);
}

int barrier(BarrierOp op, int predicate, const std::source_location& where)
{
    if (!worker().inside_kernel()) {
        report(cudaErrorLaunchFailure, "__syncthreads called outside a kernel at " + format_location(where));
        std::abort();
    }
    return worker().barrier(op, predicate, where);
}

void kernel_fail(const std::string& message, const std::source_location& where)
{
    if (!worker().inside_kernel()) {
        report(cudaErrorLaunchFailure, message + " at " + format_location(where));
        std::abort();
    }
    worker().fail_here(message, where);
}

cudaError_t launch_erased(const void* kernel, const char* name, dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, const std::source_location& where, Thunk thunk, void* closure,
                          bool counted)
{
    const std::string site = format_location(where);
    if (worker().inside_kernel()) {
        report(cudaErrorNotSupported, "kernel launched from kernel code at " + site + " (dynamic parallelism is not emulated)");
        return cudaErrorNotSupported;
    }
    const uint64_t threads = uint64_t(block.x) * block.y * block.z;
    if (block.x == 0 || block.y == 0 || block.z == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x > 1024 ||
        block.y > 1024 || block.z > 64 || threads > 1024 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
        report(cudaErrorInvalidConfiguration, "invalid launch configuration at " + site + ": grid " +
                                                  dim_string(grid.x, grid.y, grid.z) + ", block " +
                                                  dim_string(block.x, block.y, block.z) + " (" + std::to_string(threads) +
                                                  " threads; at most 1024 per block)");
        return cudaErrorInvalidConfiguration;
    }
    if (cudaError_t e = check_launch_rules(kernel, name, threads, smem, site)) return e;
    if (const std::string& e = schedule_state().error; !e.empty()) {
        report(cudaErrorInvalidValue, "launch at " + site + " refused: " + e);
        return cudaErrorInvalidValue;
    }
    if (cudaError_t e = use_stream(stream, ("launch at " + site).c_str())) return e;
    if (counted) counter_state().kernel_launches.fetch_add(1);
    if (count_only()) {
        traffic_counted_launch(name);
        return cudaSuccess;
    }
    const bool observed = observe_launch_begin(name);
    const cudaError_t e = worker().run_grid(grid, block, smem, thunk, closure, site);
    if (observed) observe_launch_end();
    return e;
}

}  // namespace detail

bool parse_schedule(const char* text, Schedule& schedule, uint64_t& seed, std::string& error)
{
    schedule = Schedule::Forward;
    seed = 1;
    error.clear();
    if (text == nullptr || *text == '\0' || std::strcmp(text, "forward") == 0) return true;
    if (std::strcmp(text, "reverse") == 0) {
        schedule = Schedule::Reverse;
        return true;
    }
    if (std::strcmp(text, "random") == 0) {
        schedule = Schedule::Random;
        return true;
    }
    if (std::strncmp(text, "random:", 7) == 0) {
        const char* digits = text + 7;
        char* end = nullptr;
        errno = 0;
        const unsigned long long value = std::strtoull(digits, &end, 10);
        if (*digits >= '0' && *digits <= '9' && *end == '\0' && errno == 0) {
            schedule = Schedule::Random;
            seed = value;
            return true;
        }
    }
    error = std::string("KDFUSE_SIMT_SCHEDULE='") + text +
            "' is not forward, reverse, random or random:SEED (SEED a decimal integer below 2^64)";
    return false;
}

void set_schedule(Schedule schedule, uint64_t seed)
{
    auto& s = detail::schedule_state();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.error.clear();
    s.schedule = schedule;
    s.seed = seed;
    s.rng.seed(seed);
}

Schedule schedule() { return detail::schedule_state().schedule; }

const char* schedule_name()
{
    switch (schedule()) {
    case Schedule::Forward: return "forward";
    case Schedule::Reverse: return "reverse";
    case Schedule::Random: return "random";
    }
    return "?";
}

}  // namespace kdfuse::simt
