// Reader of the golden data written by python_ref (python -m kdfuse_ref.golden): one directory per
// case with .npy tensors (float32 inputs, float64 expected outputs) and a case.txt of `key value` lines.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kdftest {

struct Array {
    std::vector<int64_t> shape;
    std::vector<double> values;  // converted from the file's dtype
    std::vector<float> as_float() const { return {values.begin(), values.end()}; }
    int64_t dim(size_t i) const { return i < shape.size() ? shape[i] : 1; }
};

struct GoldenCase {
    std::string name;
    std::string dir;
    std::map<std::string, std::string> params;
    bool has(const std::string& tensor) const;
    Array load(const std::string& tensor) const;  // throws std::runtime_error if missing or malformed
    double number(const std::string& key) const;
};

// The golden data root (KDFUSE_GOLDEN_DIR in the environment, else the build's default).
std::string golden_root();
// All cases of one loss, sorted by name; empty if none were generated.
std::vector<GoldenCase> golden_cases(const std::string& loss);

// Elementwise |got - want| <= atol + rtol |want|; returns "" or a description of the worst element.
std::string compare(const std::vector<float>& got, const std::vector<double>& want, double rtol, double atol);

// The tests' tolerance, the same rule as the Python gradient check: rtol 1e-4 elementwise plus an
// absolute floor of 1e-6 of the tensor's largest magnitude (fp32 rounding of terms that cancel); the
// floor scales with the tensor, so small outputs are checked as strictly as large ones (plus 1e-30 for
// references below fp32's range, which fp32 results flush to 0).
std::string compare_default(const std::vector<float>& got, const std::vector<double>& want);

}  // namespace kdftest

#define EXPECT_CLOSE(got, want, what)                                        \
    do {                                                                     \
        const std::string kdf_err_ = ::kdftest::compare_default((got), (want)); \
        EXPECT_TRUE(kdf_err_.empty()) << (what) << ": " << kdf_err_;         \
    } while (0)

namespace kdftest {

}  // namespace kdftest
