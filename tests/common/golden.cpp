#include "golden.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace kdftest {

namespace fs = std::filesystem;

bool GoldenCase::has(const std::string& tensor) const { return fs::exists(fs::path(dir) / (tensor + ".npy")); }

Array GoldenCase::load(const std::string& tensor) const
{
    const fs::path path = fs::path(dir) / (tensor + ".npy");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open " + path.string());
    char magic[8];
    in.read(magic, 8);
    if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0 || magic[6] != 1)
        throw std::runtime_error(path.string() + ": not a version 1 .npy file");
    unsigned char len[2];
    in.read(reinterpret_cast<char*>(len), 2);
    std::string header(len[0] | (len[1] << 8), '\0');
    in.read(header.data(), static_cast<std::streamsize>(header.size()));
    auto field = [&](const std::string& key) {
        const size_t at = header.find("'" + key + "':");
        if (at == std::string::npos) throw std::runtime_error(path.string() + ": header lacks " + key);
        return header.substr(at + key.size() + 3);
    };
    const std::string descr = field("descr");
    const bool f8 = descr.find("'<f8'") == 1 || descr.find("<f8") != std::string::npos;
    const bool f4 = descr.find("<f4") != std::string::npos;
    if (!f8 && !f4) throw std::runtime_error(path.string() + ": dtype is not <f4 or <f8");
    if (field("fortran_order").rfind(" False", 0) != 0) throw std::runtime_error(path.string() + ": Fortran order");
    Array a;
    std::string shape = field("shape");
    shape = shape.substr(shape.find('(') + 1, shape.find(')') - shape.find('(') - 1);
    std::stringstream ss(shape);
    for (std::string item; std::getline(ss, item, ',');)
        if (item.find_first_not_of(' ') != std::string::npos) a.shape.push_back(std::stoll(item));
    int64_t n = 1;
    for (int64_t d : a.shape) n *= d;
    a.values.resize(static_cast<size_t>(n));
    if (f8) {
        in.read(reinterpret_cast<char*>(a.values.data()), n * 8);
    } else {
        std::vector<float> tmp(static_cast<size_t>(n));
        in.read(reinterpret_cast<char*>(tmp.data()), n * 4);
        std::copy(tmp.begin(), tmp.end(), a.values.begin());
    }
    if (!in) throw std::runtime_error(path.string() + ": truncated data");
    return a;
}

double GoldenCase::number(const std::string& key) const
{
    auto it = params.find(key);
    if (it == params.end()) throw std::runtime_error(dir + "/case.txt lacks " + key);
    return std::stod(it->second);
}

std::string golden_root()
{
    if (const char* env = std::getenv("KDFUSE_GOLDEN_DIR")) return env;
    return KDFUSE_DEFAULT_GOLDEN_DIR;
}

std::vector<GoldenCase> golden_cases(const std::string& loss)
{
    std::vector<GoldenCase> cases;
    const fs::path root = fs::path(golden_root()) / loss;
    if (!fs::is_directory(root)) return cases;
    for (const auto& entry : fs::directory_iterator(root)) {
        if (!entry.is_directory()) continue;
        GoldenCase c;
        c.name = entry.path().filename().string();
        c.dir = entry.path().string();
        std::ifstream in(entry.path() / "case.txt");
        for (std::string key, value; in >> key >> value;) c.params[key] = value;
        cases.push_back(std::move(c));
    }
    std::sort(cases.begin(), cases.end(), [](const GoldenCase& a, const GoldenCase& b) { return a.name < b.name; });
    return cases;
}

std::string compare(const std::vector<float>& got, const std::vector<double>& want, double rtol, double atol)
{
    if (got.size() != want.size())
        return "size " + std::to_string(got.size()) + " != expected " + std::to_string(want.size());
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const double err = std::fabs(double(got[i]) - want[i]);
        const double excess = std::isnan(got[i]) ? INFINITY : err - (atol + rtol * std::fabs(want[i]));
        if (excess > worst) {
            worst = excess;
            at = i;
        }
    }
    if (worst <= 0.0) return "";
    std::ostringstream msg;
    msg << "element " << at << ": got " << got[at] << ", expected " << want[at] << " (rtol " << rtol << ", atol " << atol << ")";
    return msg.str();
}

std::string compare_default(const std::vector<float>& got, const std::vector<double>& want)
{
    double scale = 0.0;
    for (double v : want) scale = std::max(scale, std::fabs(v));
    return compare(got, want, 1e-4, 1e-6 * scale + 1e-30);  // 1e-30: references below fp32's range
}

}  // namespace kdftest
