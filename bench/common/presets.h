// Workload presets named after real distillation setups (docs/benchmarking.md). Shapes follow
// RepDistiller's CIFAR-100 networks and torchvision's ImageNet ResNets: the three stage outputs the
// feature losses compare (RepDistiller's feat[1:-1]), the penultimate embedding and the classes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kdfbench {

// The scale a case is built at: the preset itself, its smoke scale (executed by the SIMT backend), or the preset
// with another batch and every other dimension kept (the traffic fit of the roofline model, harness.h).
struct Scale {
    enum Kind { Full, Smoke, Batch } kind = Full;
    int64_t batch = 0;  // Kind::Batch: the batch (the rows of a logit preset, N of a CRD preset)
};

// A preset at a scale: itself, its smoke() or a copy with `batch` replaced.
template <typename P>
P at_scale(const P& preset, const Scale& s)
{
    if (s.kind == Scale::Smoke) return preset.smoke();
    P p = preset;
    if (s.kind == Scale::Batch) p.batch() = s.batch;
    return p;
}

struct Map {
    int64_t c, h, w;
    int64_t elements(int64_t n) const { return n * c * h * w; }
};

struct Preset {
    std::string name;
    int64_t n;                 // batch
    Map student[3], teacher[3];  // stage outputs 1..3
    int64_t embed_s, embed_t;  // penultimate (pooled) features
    int64_t classes;
    int64_t& batch() { return n; }
    int64_t batch() const { return n; }

    // The preset at smoke scale (SIMT backend): batch 3 (the smallest with an RKD angle term), maps at
    // most 8 x 8, at most 512 classes and 64 channels, so one emulated call takes seconds, not hours.
    Preset smoke() const
    {
        Preset p = *this;
        p.n = 3;
        for (Map* side : {p.student, p.teacher})
            for (int l = 0; l < 3; ++l) {
                Map& m = side[l];
                m.c = m.c < 64 ? m.c : 64;
                m.h = m.h < 8 ? m.h : 8;
                m.w = m.w < 8 ? m.w : 8;
            }
        p.embed_s = p.embed_s < 64 ? p.embed_s : 64;
        p.embed_t = p.embed_t < 64 ? p.embed_t : 64;
        p.classes = p.classes < 512 ? p.classes : 512;
        return p;
    }
};

// CIFAR-100 (N = 64, as RepDistiller's train_student.py) and ImageNet (N = 256) teacher -> student pairs.
inline const std::vector<Preset>& network_presets()
{
    static const std::vector<Preset> presets = {
        {"cifar100_resnet32x4_resnet8x4", 64,
         {{64, 32, 32}, {128, 16, 16}, {256, 8, 8}}, {{64, 32, 32}, {128, 16, 16}, {256, 8, 8}}, 256, 256, 100},
        {"cifar100_wrn40x2_wrn16x2", 64,
         {{32, 32, 32}, {64, 16, 16}, {128, 8, 8}}, {{32, 32, 32}, {64, 16, 16}, {128, 8, 8}}, 128, 128, 100},
        {"cifar100_vgg13_vgg8", 64,
         {{128, 16, 16}, {256, 8, 8}, {512, 4, 4}}, {{128, 16, 16}, {256, 8, 8}, {512, 4, 4}}, 512, 512, 100},
        {"imagenet_resnet34_resnet18", 256,
         {{128, 28, 28}, {256, 14, 14}, {512, 7, 7}}, {{128, 28, 28}, {256, 14, 14}, {512, 7, 7}}, 512, 512, 1000},
    };
    return presets;
}

// LLM-scale logit distillation (KD only): rows = tokens of a batch, classes = the vocabulary; fp32 logits, and
// bf16 logits and gradient as LLM training stores them.
struct LogitPreset {
    std::string name;
    int64_t rows, classes;
    bool bf16 = false;
    int64_t& batch() { return rows; }
    int64_t batch() const { return rows; }
    LogitPreset smoke() const { return {name, 2, classes < 4096 ? classes : 4096, bf16}; }
};

inline const std::vector<LogitPreset>& logit_presets()
{
    static const std::vector<LogitPreset> presets = {
        {"llm_8192x32000", 8192, 32000},               // Llama-2 vocabulary
        {"llm_8192x128256", 8192, 128256},             // Llama-3 vocabulary
        {"llm_8192x32000_bf16", 8192, 32000, true},
        {"llm_8192x128256_bf16", 8192, 128256, true},
    };
    return presets;
}

// CRD: the memory banks of CIFAR-100 (RepDistiller: n_data 50,000, N 64) and ImageNet (n_data 1,281,167,
// N 256), K = 16384 negatives, 128-d embeddings.
struct CRDPreset {
    std::string name;
    int64_t n_data, n, k, d;
    int64_t& batch() { return n; }
    int64_t batch() const { return n; }
    CRDPreset smoke() const { return {name, 1000, 2, 255, d}; }
};

inline const std::vector<CRDPreset>& crd_presets()
{
    static const std::vector<CRDPreset> presets = {
        {"cifar100_n64_k16384", 50000, 64, 16384, 128},
        {"imagenet_n256_k16384", 1281167, 256, 16384, 128},
    };
    return presets;
}

}  // namespace kdfbench
