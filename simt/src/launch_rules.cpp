// The GPU's launch rules for the emulated launch: block shape, shared memory (static + dynamic, the default
// limit and the opt-in maxima of each architecture) and registers x threads, with the per-kernel resources of
// the real build (registers and static shared memory from ptxas, for sm_80 and sm_90) read from the generated
// table kernel_resources.inc (scripts/sass_audit.py writes it; CI checks it against the CUDA build).
#include "state.h"

#include <cxxabi.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <string_view>
#include <vector>

namespace kdfuse::simt {
namespace detail {
namespace {

struct Resources {
    int arch;
    int registers;
    int static_smem;
};
struct TableEntry {
    const char* kernel;
    Resources resources;
};

constexpr TableEntry kGeneratedTable[] = {
#include "kernel_resources.inc"
};

// Opt-in maximum of dynamic + static shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin).
size_t optin_smem(int arch) { return arch >= 90 ? 227 * 1024 : arch >= 80 ? 163 * 1024 : 48 * 1024; }

struct ResourceTable {
    std::mutex mutex;
    std::map<std::string, std::vector<Resources>, std::less<>> kernels;
    ResourceTable()
    {
        for (const TableEntry& e : kGeneratedTable) kernels[e.kernel].push_back(e.resources);
    }
};
ResourceTable& resource_table()
{
    static ResourceTable t;
    return t;
}

std::string arch_name(int arch) { return "sm_" + std::to_string(arch); }

}  // namespace

std::string kernel_name_from_tag(const char* mangled_tag)
{
    int status = 0;
    std::unique_ptr<char, decltype(&std::free)> text(abi::__cxa_demangle(mangled_tag, nullptr, nullptr, &status),
                                                     &std::free);
    if (status != 0 || text == nullptr) return mangled_tag;
    // "kdfuse::simt::detail::KernelTag<&(void ns::kernel<128, float>(Args, bool))>" or "...KernelTag<&ns::kernel>"
    std::string s(text.get());
    const size_t open = s.find("KernelTag<");
    if (open == std::string::npos || s.back() != '>') return s;
    s = s.substr(open + 10, s.size() - open - 11);
    if (s.starts_with("&")) s.erase(0, 1);
    if (s.starts_with("(") && s.ends_with(")")) s = s.substr(1, s.size() - 2);
    if (s.starts_with("void ")) s.erase(0, 5);
    if (s.ends_with(")")) {  // drop the parameter list: from the '(' that closes at the end
        int depth = 0;
        for (size_t i = s.size(); i-- > 0;) {
            depth += s[i] == ')' ? 1 : s[i] == '(' ? -1 : 0;
            if (depth == 0) {
                s.erase(i);
                break;
            }
        }
    }
    // The SIMT build's half types live in the emulator's namespace; the real build's are global.
    for (size_t at; (at = s.find("kdfuse::simt::api::")) != std::string::npos;) s.erase(at, 19);
    return s;
}

cudaError_t check_launch_rules(const void* kernel, const char* name, uint64_t threads, size_t smem,
                               const std::string& site)
{
    const std::optional<size_t> optin = optin_dynamic_smem(kernel);
    const bool opted_in = optin.has_value();
    const size_t optin_limit = optin.value_or(kDefaultDynamicSmem);
    std::vector<Resources> archs;
    if (name != nullptr) {
        ResourceTable& t = resource_table();
        std::lock_guard<std::mutex> lock(t.mutex);
        if (auto it = t.kernels.find(name); it != t.kernels.end()) archs = it->second;
    }
    if (archs.empty() && name != nullptr && std::string_view(name).starts_with("kdf::")) {
        report(cudaErrorInvalidValue, "launch at " + site + ": kernel " + name +
                                          " has no entry in the SIMT backend's resource table "
                                          "(simt/src/kernel_resources.inc); regenerate it from the CUDA build with "
                                          "scripts/sass_audit.py --update");
        return cudaErrorInvalidValue;
    }
    if (archs.empty()) archs.push_back({90, 0, 0});  // a kernel of the tests' own: sm_90 rules, no static use
    const std::string who = name != nullptr ? std::string(" (") + name + ")" : std::string();
    for (const Resources& r : archs) {
        const size_t total = smem + static_cast<size_t>(r.static_smem);
        if (smem > optin_limit || (!opted_in && total > kDefaultDynamicSmem) || total > optin_smem(r.arch)) {
            std::string why = opted_in && smem > optin_limit
                                  ? "more dynamic shared memory than the " + std::to_string(optin_limit) +
                                        " bytes the kernel opted in to"
                              : opted_in ? "more than the " + std::to_string(optin_smem(r.arch)) + " bytes " +
                                               arch_name(r.arch) + " allows a block"
                                         : std::string("more than the 49152 bytes a kernel may use without opting in "
                                                       "(cudaFuncSetAttribute MaxDynamicSharedMemorySize)");
            report(cudaErrorInvalidValue, "launch at " + site + who + " requests " + std::to_string(smem) +
                                              " bytes of dynamic shared memory + " + std::to_string(r.static_smem) +
                                              " static on " + arch_name(r.arch) + ": " + why);
            return cudaErrorInvalidValue;
        }
        // Registers are allocated per warp in units of 256; a block may use 64K of them.
        const uint64_t per_warp = (static_cast<uint64_t>(r.registers) * 32 + 255) / 256 * 256;
        const uint64_t needed = (threads + 31) / 32 * per_warp;
        if (needed > 65536) {
            report(cudaErrorLaunchOutOfResources,
                   "too many resources requested for launch at " + site + who + ": " + std::to_string(threads) +
                       " threads x " + std::to_string(r.registers) + " registers on " + arch_name(r.arch) + " need " +
                       std::to_string(needed) + " registers, a block may use 65536");
            return cudaErrorLaunchOutOfResources;
        }
    }
    return cudaSuccess;
}

}  // namespace detail

void set_kernel_resources(const char* name, int arch, int registers, int static_smem)
{
    detail::ResourceTable& t = detail::resource_table();
    std::lock_guard<std::mutex> lock(t.mutex);
    std::vector<detail::Resources>& entries = t.kernels[name];
    std::erase_if(entries, [&](const detail::Resources& r) { return r.arch == arch; });
    entries.push_back({arch, registers, static_smem});
}

}  // namespace kdfuse::simt
