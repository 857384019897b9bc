// What the instrumented build observes (libkdfuse_sim_traffic: every load and store of its code reports through
// traffic_hooks.cpp to traffic_access()), for the launch running on this thread, in cudaMalloc memory only:
// - measured global-memory traffic (runtime.h: LaunchTraffic): the accesses are added to the launch's record;
//   memsets, device copies and the cuBLAS shim's GEMMs add records of their own;
// - the weak-memory check (runtime.h: set_memory_check): which thread stored each byte and whether it has fenced
//   since; a plain load by another block of a byte not yet published is reported.
#include "state.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

namespace kdfuse::simt {
namespace detail {
namespace {

struct TrafficState {
    std::mutex mutex;
    std::vector<LaunchTraffic> records;
    std::atomic<bool> on{false};
    std::atomic<bool> instrumented{false};
    std::atomic<bool> weak{[] {
        const char* v = std::getenv("KDFUSE_SIMT_MEMORY");
        return v != nullptr && std::strcmp(v, "weak") == 0;
    }()};
};
TrafficState& traffic_state()
{
    static TrafficState s;
    return s;
}

// The writer of a byte in the weak-memory check: the thread (block-major linear id) and whether its store
// is visible to other blocks (it fenced since, or the store was atomic).
struct Writer {
    uint64_t thread;
    bool published;
};

// The launch running on this OS thread (all fibers of a block share it).
struct Recording {
    bool traffic = false, weak = false;
    LaunchTraffic record;
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges;  // the device allocations at launch, [base, end), sorted
    size_t hit = 0;                                        // the range of the previous access
    std::unordered_map<uint64_t, uint32_t> sectors;        // 32-byte sector -> bytes touched (bit mask)
    std::unordered_map<uintptr_t, Writer> bytes;           // weak: byte address -> its last writer
    std::unordered_map<uint64_t, std::vector<uintptr_t>> unpublished;  // weak: thread -> bytes it stored since its fence
};
thread_local Recording* tl_recording = nullptr;

int width_slot(size_t bytes)
{
    switch (bytes) {
    case 1: return 0;
    case 2: return 1;
    case 4: return 2;
    case 8: return 3;
    case 16: return 4;
    default: return -1;
    }
}

bool in_device_memory(Recording& r, uintptr_t a)
{
    if (r.hit < r.ranges.size() && a >= r.ranges[r.hit].first && a < r.ranges[r.hit].second) return true;
    auto it = std::upper_bound(r.ranges.begin(), r.ranges.end(), std::make_pair(a, UINTPTR_MAX));
    if (it == r.ranges.begin()) return false;
    --it;
    if (a >= it->second) return false;
    r.hit = static_cast<size_t>(it - r.ranges.begin());
    return true;
}

// Marks bytes [a, a + bytes) as touched: one mask update per 32-byte sector spanned.
void touch(std::unordered_map<uint64_t, uint32_t>& sectors, uintptr_t a, size_t bytes)
{
    const uintptr_t end = a + bytes;
    while (a < end) {
        const uintptr_t sector_end = (a | 31) + 1;
        const unsigned lo = static_cast<unsigned>(a & 31), n = static_cast<unsigned>((end < sector_end ? end : sector_end) - a);
        sectors[a >> 5] |= (n == 32 ? ~0u : ((1u << n) - 1u)) << lo;
        a += n;
    }
}

void finish(LaunchTraffic& record, const std::unordered_map<uint64_t, uint32_t>& sectors)
{
    record.sectors = sectors.size();
    for (const auto& [sector, mask] : sectors) record.unique_bytes += static_cast<uint64_t>(std::popcount(mask));
    TrafficState& s = traffic_state();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.records.push_back(record);
}

const char* launch_name(const char* name) { return name != nullptr ? name : "CUB device reduction"; }

// "OFFSET of the BYTES-byte allocation at 0xBASE" for a device address.
std::string where_in_allocation(const Recording& r, uintptr_t a)
{
    auto it = std::upper_bound(r.ranges.begin(), r.ranges.end(), std::make_pair(a, UINTPTR_MAX));
    if (it == r.ranges.begin()) return std::to_string(a);
    --it;
    char base[32];
    std::snprintf(base, sizeof(base), "%#llx", static_cast<unsigned long long>(it->first));
    return std::to_string(a - it->first) + " of the " + std::to_string(it->second - it->first) + "-byte allocation at " +
           base;
}

uint64_t block_linear()
{
    const uint3& b = tl_block.block_idx;
    const dim3& g = tl_block.grid_dim;
    return (uint64_t(b.z) * g.y + b.y) * g.x + b.x;
}

uint64_t thread_linear()
{
    const uint3& t = tl_thread->thread_idx;
    const dim3& d = tl_block.block_dim;
    return block_linear() * 1024 + (uint64_t(t.z) * d.y + t.y) * d.x + t.x;
}

std::string thread_name(uint64_t thread)
{
    return "block " + std::to_string(thread / 1024) + ", thread " + std::to_string(thread % 1024);
}

void weak_access(Recording& r, uintptr_t a, size_t bytes, bool store)
{
    const uint64_t me = thread_linear();
    const bool atomic = tl_atomic_depth > 0;
    for (uintptr_t byte = a; byte < a + bytes; ++byte) {  // bytes: 16-bit neighbours of other blocks do not conflict
        if (store) {
            r.bytes[byte] = {me, atomic};
            if (!atomic) r.unpublished[me].push_back(byte);
            continue;
        }
        const auto it = r.bytes.find(byte);
        if (it == r.bytes.end() || it->second.published || atomic || it->second.thread / 1024 == me / 1024) continue;
        const Writer writer = it->second;
        it->second.published = true;  // reported once
        kernel_fail("weak memory in " + r.record.name + ": " + thread_name(me) + " loads byte " +
                        where_in_allocation(r, byte) + " that " +
                        thread_name(writer.thread) +
                        " stored without a __threadfence() since (or an atomic): on a GPU the load may return the "
                        "value from before the store",
                    std::source_location::current());
    }
}

}  // namespace

thread_local int tl_atomic_depth = 0;

void memory_fence()
{
    Recording* r = tl_recording;
    if (r == nullptr || !r->weak) return;
    const auto it = r->unpublished.find(thread_linear());
    if (it == r->unpublished.end()) return;
    for (const uintptr_t b : it->second)
        if (auto byte = r->bytes.find(b); byte != r->bytes.end() && byte->second.thread == it->first)
            byte->second.published = true;
    r->unpublished.erase(it);
}

void traffic_access(const void* p, size_t bytes, bool store)
{
    Recording* r = tl_recording;
    if (r == nullptr) return;
    const auto a = reinterpret_cast<uintptr_t>(p);
    if (!in_device_memory(*r, a)) return;
    if (r->weak) weak_access(*r, a, bytes, store);
    if (!r->traffic) return;
    const int slot = width_slot(bytes);
    if (store) {
        r->record.bytes_stored += bytes;
        if (slot >= 0) ++r->record.stores_by_width[slot];
    } else {
        r->record.bytes_loaded += bytes;
        if (slot >= 0) ++r->record.loads_by_width[slot];
    }
    touch(r->sectors, a, bytes);
}

void mark_traffic_instrumented() { traffic_state().instrumented = true; }

bool observe_launch_begin(const char* name)
{
    const TrafficState& s = traffic_state();
    if (!s.instrumented || (!s.on && !s.weak)) return false;
    static thread_local Recording recording;
    recording = Recording{};
    recording.traffic = s.on;
    recording.weak = s.weak;
    recording.record.name = launch_name(name);
    recording.ranges = allocation_ranges();
    tl_recording = &recording;
    return true;
}

void observe_launch_end()
{
    Recording* r = tl_recording;
    tl_recording = nullptr;
    if (r == nullptr || !r->traffic) return;
    counter_state().bytes_loaded.fetch_add(r->record.bytes_loaded);
    counter_state().bytes_stored.fetch_add(r->record.bytes_stored);
    finish(r->record, r->sectors);
}

void traffic_counted_launch(const char* name)
{
    if (!traffic_state().on) return;
    LaunchTraffic record;
    record.name = launch_name(name);
    record.executed = false;
    finish(record, {});
}

void traffic_runtime_op(const char* name, const void* dst, size_t stored, const void* src, size_t loaded, bool modelled)
{
    if (!traffic_state().on) return;
    LaunchTraffic record;
    record.name = name;
    record.modelled = modelled;
    record.bytes_stored = stored;
    record.bytes_loaded = loaded;
    std::unordered_map<uint64_t, uint32_t> sectors;
    if (!modelled) {  // a modelled record has no addresses: its traffic is counted, not located
        touch(sectors, reinterpret_cast<uintptr_t>(dst), stored);
        if (src != nullptr) touch(sectors, reinterpret_cast<uintptr_t>(src), loaded);
    } else {
        record.unique_bytes = stored + loaded;
    }
    finish(record, sectors);
}

void reset_traffic()
{
    TrafficState& s = traffic_state();
    std::lock_guard<std::mutex> lock(s.mutex);
    s.records.clear();
}

}  // namespace detail

void set_traffic_recording(bool on) { detail::traffic_state().on = on; }

std::vector<LaunchTraffic> traffic()
{
    detail::TrafficState& s = detail::traffic_state();
    std::lock_guard<std::mutex> lock(s.mutex);
    return s.records;
}

bool traffic_instrumented() { return detail::traffic_state().instrumented; }

void set_memory_check(bool weak) { detail::traffic_state().weak = weak; }

bool memory_check() { return detail::traffic_state().weak; }

}  // namespace kdfuse::simt
