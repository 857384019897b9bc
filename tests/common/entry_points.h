// Every loss entry point of the C API described as data: valid random params of modest size, the buffers the
// call takes (in the call's order, with their byte extents from the params and whether the call writes them),
// the size query and the call itself. Shared by the aliasing test and the fuzz harness, so both cover every
// entry point the same way.
#pragma once

#include <kdfuse/kdfuse.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace kdftest {

using Rng = std::mt19937_64;
using Pointers = std::vector<void*>;

// What a buffer holds, so valid calls can fill it with meaningful values.
enum class Fill {
    Float,  // finite fp32 values (fp16 / bf16 tensors get bytes that decode to finite values too)
    Index,  // int32 / int64 indices in [0, n_data) (CRD)
    Zero,   // outputs, the workspace, state that must start zeroed (CRD's index_status)
};

struct Buffer {
    std::string name;
    size_t bytes;      // extent from the params
    size_t alignment;  // the element alignment the call requires
    bool written;      // an output, the workspace or state the call writes
    bool required;     // NULL is refused (else NULL means "not computed" / "not given")
    Fill fill = Fill::Float;
    size_t element_bytes = 4;  // Fill::Float: 4 (fp32) or 2 (fp16 / bf16); Fill::Index: 4 or 8
    int64_t index_limit = 0;   // Fill::Index: n_data
    bool present = true;       // false: an optional buffer this call passes as NULL
};

// A field of the params struct, for mutation: its offset and type (I32: an int count such as KDSVD's num_layers).
struct Field {
    enum Type { I64, I32, F32, Enum, Flag, U64 } type;
    size_t offset;
    std::string name;
};

// One entry point with one set of params. `params` is the struct the calls read (mutable, so a fuzzer can
// change fields); `query` and `call` use it as it is at call time. The workspace is the last buffer named
// "workspace" when the entry takes one (its bytes are the query's answer for the params as generated).
struct Entry {
    std::string name;
    std::shared_ptr<void> params;
    size_t params_size = 0;
    std::vector<Field> fields;
    std::vector<Buffer> buffers;
    bool has_grad_scale = false;
    std::function<kdfStatus_t(size_t* bytes)> query;  // empty: the entry has no size query
    std::function<kdfStatus_t(kdfHandle_t, const Pointers&, size_t workspace_bytes, float grad_scale, kdfStream_t)> call;

    int workspace_index() const;  // -1 when there is none
    template <typename Params>
    Params& as() const
    {
        return *static_cast<Params*>(params.get());
    }
};

// Fills a host image of buffer `b` as Fill says, from `rng`.
std::vector<unsigned char> host_values(const Buffer& b, Rng& rng);

// The entry points with valid random params drawn from `rng` (small shapes: a call runs in milliseconds on the
// SIMT backend). Optional outputs and inputs are present or absent at random when `optional_at_random`, else
// all present.
std::vector<Entry> entry_points(Rng& rng, bool optional_at_random = true);

}  // namespace kdftest
