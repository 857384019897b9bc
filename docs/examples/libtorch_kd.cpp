// kdfuse from a C++ LibTorch program: the registered operator torch.ops.kdfuse.kd, called through PyTorch's
// dispatcher on CPU tensors (the SIMT build; CUDA tensors would run the CUDA build on the current stream), with its
// autograd: loss.backward() fills y_s.grad() with the gradient the fused call computed. Checked against the same
// loss written with ATen ops. Build: link libkdfuse_torch and libkdfuse_torch_cpu (and libkdfuse_torch_cuda for
// CUDA tensors) with --no-as-needed: the program uses them only through the registrations their loading makes.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <cstdio>
#include <optional>
#include <tuple>

int main() {
    using KDOp = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
        const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, double, c10::string_view, bool, bool);
    auto kd = c10::Dispatcher::singleton().findSchemaOrThrow("kdfuse::kd", "").typed<KDOp>();

    at::manual_seed(0);
    const double T = 4.0;
    at::Tensor y_s = at::randn({8, 100}).requires_grad_();
    at::Tensor y_t = at::randn({8, 100});

    // loss, gradient of y_s (computed in the same fused call), no gradient for the teacher
    auto [loss, grad_s, grad_t] = kd.call(y_s, y_t, std::nullopt, T, "batchmean", true, false);
    loss.backward();

    // the same loss with ATen ops: T^2 * KL(softmax(y_t / T) || softmax(y_s / T)), summed over classes, mean over rows
    at::Tensor ref_s = y_s.detach().clone().requires_grad_();
    at::Tensor p_t = at::softmax(y_t / T, 1);
    at::Tensor ref = (p_t * (at::log_softmax(y_t / T, 1) - at::log_softmax(ref_s / T, 1))).sum() * (T * T / 8);
    ref.backward();

    const double loss_error = std::abs(loss.item<double>() - ref.item<double>());
    const double grad_error = (y_s.grad() - ref_s.grad()).abs().max().item<double>();
    std::printf("kdfuse::kd  loss %.6f (ATen %.6f)  max |grad difference| %.3g  grad_t computed: %s\n",
                loss.item<double>(), ref.item<double>(), grad_error, grad_t.numel() ? "yes" : "no");
    return loss_error < 1e-5 && grad_error < 1e-6 && grad_t.numel() == 0 ? 0 : 1;
}
