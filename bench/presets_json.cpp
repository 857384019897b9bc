// Prints the workload presets of bench/common/presets.h as JSON, so the PyTorch baseline
// (bench/torch_baseline.py) runs exactly the shapes the C++ suites run:
//   {"networks": [{"name", "n", "student": [[c, h, w] x 3], "teacher": [...], "embed_s", "embed_t",
//                  "classes", "smoke": {...the same at smoke scale...}}],
//    "logits": [{"name", "rows", "classes", "dtype", "smoke": {...}}],
//    "crd": [{"name", "n_data", "n", "k", "d", "smoke": {...}}]}
#include "common/presets.h"

#include <cstdio>
#include <string>

namespace {

std::string maps(const kdfbench::Map (&m)[3])
{
    std::string s = "[";
    for (int l = 0; l < 3; ++l)
        s += (l ? ", [" : "[") + std::to_string(m[l].c) + ", " + std::to_string(m[l].h) + ", " + std::to_string(m[l].w) + "]";
    return s + "]";
}

std::string network(const kdfbench::Preset& p)
{
    return "\"name\": \"" + p.name + "\", \"n\": " + std::to_string(p.n) + ", \"student\": " + maps(p.student) +
           ", \"teacher\": " + maps(p.teacher) + ", \"embed_s\": " + std::to_string(p.embed_s) +
           ", \"embed_t\": " + std::to_string(p.embed_t) + ", \"classes\": " + std::to_string(p.classes);
}

std::string crd(const kdfbench::CRDPreset& p)
{
    return "\"name\": \"" + p.name + "\", \"n_data\": " + std::to_string(p.n_data) + ", \"n\": " + std::to_string(p.n) +
           ", \"k\": " + std::to_string(p.k) + ", \"d\": " + std::to_string(p.d);
}

std::string logits(const kdfbench::LogitPreset& p)
{
    return "\"name\": \"" + p.name + "\", \"rows\": " + std::to_string(p.rows) + ", \"classes\": " + std::to_string(p.classes) +
           ", \"dtype\": \"" + (p.bf16 ? "bfloat16" : "float32") + "\"";
}

}  // namespace

int main()
{
    std::printf("{\"networks\": [");
    const auto& nets = kdfbench::network_presets();
    for (size_t i = 0; i < nets.size(); ++i)
        std::printf("%s\n  {%s, \"smoke\": {%s}}", i ? "," : "", network(nets[i]).c_str(), network(nets[i].smoke()).c_str());
    std::printf("],\n \"logits\": [");
    const auto& lg = kdfbench::logit_presets();
    for (size_t i = 0; i < lg.size(); ++i)
        std::printf("%s\n  {%s, \"smoke\": {%s}}", i ? "," : "", logits(lg[i]).c_str(), logits(lg[i].smoke()).c_str());
    std::printf("],\n \"crd\": [");
    const auto& cr = kdfbench::crd_presets();
    for (size_t i = 0; i < cr.size(); ++i)
        std::printf("%s\n  {%s, \"smoke\": {%s}}", i ? "," : "", crd(cr[i]).c_str(), crd(cr[i].smoke()).c_str());
    std::printf("]}\n");
    return 0;
}
