// Measured global-memory traffic (runtime.h: LaunchTraffic). The instrumented kernel code of the
// libkdfuse_sim_traffic build reports every load and store through traffic_hooks.cpp to traffic_access(); the
// accesses made while a launch runs on this thread and inside a cudaMalloc allocation are added to that launch's
// record. Memsets, device copies and the cuBLAS shim's GEMMs add records of their own.
#include "state.h"

#include <algorithm>
#include <bit>
#include <unordered_map>

namespace kdfuse::simt {
namespace detail {
namespace {

struct TrafficState {
    std::mutex mutex;
    std::vector<LaunchTraffic> records;
    std::atomic<bool> on{false};
    std::atomic<bool> instrumented{false};
};
TrafficState& traffic_state()
{
    static TrafficState s;
    return s;
}

// The launch running on this OS thread (all fibers of a block share it).
struct Recording {
    LaunchTraffic record;
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges;  // the device allocations at launch, [base, end), sorted
    size_t hit = 0;                                        // the range of the previous access
    std::unordered_map<uint64_t, uint32_t> sectors;        // 32-byte sector -> bytes touched (bit mask)
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

}  // namespace

void traffic_access(const void* p, size_t bytes, bool store)
{
    Recording* r = tl_recording;
    if (r == nullptr) return;
    const auto a = reinterpret_cast<uintptr_t>(p);
    if (!in_device_memory(*r, a)) return;
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

bool traffic_begin_launch(const char* name)
{
    if (!traffic_state().on) return false;
    static thread_local Recording recording;
    recording = Recording{};
    recording.record.name = launch_name(name);
    recording.ranges = allocation_ranges();
    tl_recording = &recording;
    return true;
}

void traffic_end_launch()
{
    Recording* r = tl_recording;
    tl_recording = nullptr;
    if (r == nullptr) return;
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

}  // namespace kdfuse::simt
