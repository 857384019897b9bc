// KD (kdfKD): the CIFAR-100 and ImageNet classifier heads of the network presets and LLM-scale logit
// distillation, the latter also with bf16 logits and gradient (as LLM training stores them). Minimum traffic:
// both logit matrices read once, the student gradient written once (4 or 2 bytes per element).
#include "common/harness.h"
#include "common/presets.h"

namespace {

using kdfbench::Case;

Case kd_case(int64_t rows, int64_t classes, bool bf16 = false)
{
    Case c;
    const size_t n = static_cast<size_t>(rows * classes);
    const void* y_s = bf16 ? static_cast<const void*>(c.hold(kdfbench::uniform_bf16(n, 1, -4.0f, 4.0f)))
                           : c.hold(kdfbench::uniform(n, 1, -4.0f, 4.0f));
    const void* y_t = bf16 ? static_cast<const void*>(c.hold(kdfbench::uniform_bf16(n, 2, -4.0f, 4.0f)))
                           : c.hold(kdfbench::uniform(n, 2, -4.0f, 4.0f));
    void* grad = bf16 ? static_cast<void*>(c.hold(std::make_unique<kdfbench::Array<__nv_bfloat16>>(n)))
                      : c.hold(std::make_unique<kdfbench::Array<float>>(n));
    float* loss = c.hold(std::make_unique<kdfbench::Array<float>>(1));
    kdfKDParams_t p = KDF_KD_PARAMS_INIT;
    p.rows = rows, p.classes = classes;
    p.dtype = bf16 ? KDF_DTYPE_BF16 : KDF_DTYPE_FP32;
    size_t bytes = 0;
    kdfKDWorkspaceSize(&p, &bytes);
    unsigned char* ws = c.hold(kdfbench::workspace(bytes));
    c.model.bytes = (bf16 ? 2.0 : 4.0) * 3.0 * static_cast<double>(n);
    c.call = [=](kdfHandle_t h, cudaStream_t s) {
        return kdfKD(h, &p, y_s, y_t, nullptr, loss, grad, nullptr, nullptr, 1.0f, 0, ws, bytes, s);
    };
    return c;
}

const bool registered = [] {
    for (const auto& preset : kdfbench::network_presets())
        kdfbench::register_case("kd", preset.name, preset.batch(), [preset](const kdfbench::Scale& s) {
            const auto p = kdfbench::at_scale(preset, s);
            return kd_case(p.n, p.classes);
        });
    for (const auto& preset : kdfbench::logit_presets())
        kdfbench::register_case("kd", preset.name, preset.batch(), [preset](const kdfbench::Scale& s) {
            const auto p = kdfbench::at_scale(preset, s);
            return kd_case(p.rows, p.classes, p.bf16);
        });
    return true;
}();

}  // namespace

BENCHMARK_MAIN();
