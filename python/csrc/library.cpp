// libkdfuse_torch: the `kdfuse` operator library of PyTorch's dispatcher, without any device code.
//
// - The schemas of torch.ops.kdfuse.<loss> (TORCH_LIBRARY). The device kernels are in device_ops.cpp, built twice:
//   libkdfuse_torch_cpu (CPU key, the SIMT build of the C library) and libkdfuse_torch_cuda (CUDA key, the CUDA
//   build); this library calls neither, so it loads in any process.
// - Their autograd (Autograd key), in C++: every loss op returns the loss and, from the same fused call, the
//   gradients of the inputs whose need_grad_<x> flag is set. The autograd kernel runs the op below autograd,
//   saves those gradients and attaches a node whose backward is saved_gradient * grad_output (a multiply on the
//   device, no host synchronisation). KDSVD's per-pair losses take a second op call in their backward
//   (kdsvd_backward: a middle layer's gradient mixes two pairs' grad_output); its summed form (kdsvd_sum) saves the
//   gradients of its one call like the others. CRD's gradients are attached by attach_grads (an op that mutates its
//   inputs cannot carry an autograd formula).
// - First order only: a backward run with create_graph=True returns gradients attached to a node that raises
//   "kdfuse.<loss>: double backward is not supported" when differentiated.
//
// The fake (meta) kernels for torch.compile are registered from Python (kdfuse/_meta.py), which this library
// names with set_python_module so that a fake-tensor trace of an op imports them.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/mul.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/library.h>

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace {

using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

// saved * grad_output in saved's dtype; grad_output is 0-dim, or one value per row (KD with reduction="none").
at::Tensor scaled(const at::Tensor& saved, const at::Tensor& grad_output) {
    at::Tensor g = grad_output;
    if (g.dim() > 0) {
        std::vector<int64_t> shape(g.sizes().begin(), g.sizes().end());
        shape.resize(saved.dim(), 1);
        g = g.reshape(shape);
    }
    return at::mul(saved, g).to(saved.scalar_type());
}

// The gradients of a kdfuse backward run under create_graph=True, passed through (same values) by a node whose own
// backward raises `message`: without it the results would stand as constants in a second backward, which would
// then silently drop the second-order terms.
struct FirstOrderOnly : Node {
    explicit FirstOrderOnly(std::string message) : message_(std::move(message)) {}
    variable_list apply(variable_list&&) override { TORCH_CHECK(false, message_); }
    std::string name() const override { return "kdfuse::FirstOrderOnly"; }
    std::string message_;
};

variable_list first_order_only(variable_list grads, const std::string& loss, const std::string& op,
                               const std::string& backward) {
    if (!at::GradMode::is_enabled()) {
        return grads;
    }
    auto node = c10::make_intrusive<FirstOrderOnly>(
        "kdfuse." + loss + ": double backward is not supported: the backward of torch.ops.kdfuse." + op + " " +
        backward + " and is not itself differentiable; compute higher-order gradients with the PyTorch reference "
        "(kdfuse_ref) instead");
    for (auto& g : grads) {
        if (g.defined()) {
            g = g.detach();
            torch::autograd::set_history(g, node);
        }
    }
    return grads;
}

constexpr const char* kScaledBackward = "scales the gradient the forward computed (saved gradient * grad_output)";

// What a loss op's backward reports, per op (built once, shared by every node of that op): its name, and per
// differentiable input the input's and its need_grad flag's argument names.
struct LossInfo {
    std::string name;
    std::vector<std::string> inputs, flags;
};

// The backward of a loss op: one output edge per differentiable input; gradient i is saved[i] * grad_output.
struct LossBackward : Node {
    variable_list apply(variable_list&& grad_outputs) override {
        const at::Tensor& grad_loss = grad_outputs[0];
        variable_list result(num_outputs());
        for (size_t i = 0; i < result.size(); ++i) {
            if (!should_compute_output(i)) {
                continue;
            }
            TORCH_CHECK(computed[i], "kdfuse::", info->name, ": input ", info->inputs[i],
                        " requires grad but the op was called with ", info->flags[i],
                        "=False, so its gradient was not computed");
            result[i] = scaled(saved[i].unpack(), grad_loss);
        }
        return first_order_only(std::move(result), info->name, info->name, kScaledBackward);
    }
    std::string name() const override { return "kdfuse::" + info->name + "Backward"; }
    void release_variables() override {
        for (auto& s : saved) {
            s.reset_data();
        }
    }

    std::shared_ptr<const LossInfo> info;
    std::vector<bool> computed;
    std::vector<SavedVariable> saved;
};

// A differentiable input of a loss op and the bool argument saying whether the fused call computes its gradient,
// returned as output 1 + (its position in the list).
struct GradInput {
    int input;
    int flag;
};

// The Autograd kernel of a loss op (boxed: one kernel for every loss, configured by its GradInputs).
class LossAutograd final : public c10::OperatorKernel {
  public:
    LossAutograd(std::string name, std::vector<GradInput> grads) : name_(std::move(name)), grads_(std::move(grads)) {}

    void operator()(const c10::OperatorHandle& op, c10::DispatchKeySet ks, torch::jit::Stack* stack) {
        const auto& schema = op.schema();
        const size_t base = stack->size() - schema.arguments().size();
        std::vector<at::Tensor> inputs;
        std::vector<bool> computed;
        bool needs_grad = false;
        for (const auto& g : grads_) {
            inputs.push_back((*stack)[base + g.input].toTensor());
            computed.push_back((*stack)[base + g.flag].toBool());
            needs_grad |= torch::autograd::compute_requires_grad(inputs.back());
        }
        {
            at::AutoDispatchBelowADInplaceOrView guard;
            op.redispatchBoxed(ks & c10::after_autograd_keyset, stack);
        }
        if (!needs_grad) {
            return;
        }
        // The outputs are now on the stack: loss, then one gradient per GradInput.
        const size_t out = stack->size() - schema.returns().size();
        auto node = c10::make_intrusive<LossBackward>();
        node->info = info(schema);
        node->computed = computed;
        torch::autograd::edge_list edges;
        for (size_t i = 0; i < grads_.size(); ++i) {
            node->saved.emplace_back(computed[i] ? (*stack)[out + 1 + i].toTensor() : at::Tensor(), false);
            edges.push_back(torch::autograd::impl::gradient_edge(inputs[i]));
        }
        node->set_next_edges(std::move(edges));
        torch::autograd::set_history((*stack)[out].toTensor(), node);
    }

  private:
    std::shared_ptr<const LossInfo> info(const c10::FunctionSchema& schema) {
        std::call_once(info_once_, [&] {
            auto info = std::make_shared<LossInfo>();
            info->name = name_;
            for (const auto& g : grads_) {
                info->inputs.push_back(schema.arguments()[g.input].name());
                info->flags.push_back(schema.arguments()[g.flag].name());
            }
            info_ = std::move(info);
        });
        return info_;
    }

    std::string name_;
    std::vector<GradInput> grads_;
    std::once_flag info_once_;
    std::shared_ptr<const LossInfo> info_;
};

// attach_grads(loss, a, b, grad_a, grad_b): a copy of loss whose gradient w.r.t. a (b) is grad_a (grad_b) times
// the upstream gradient (CRD's gradients, computed by the mutating crd op).
struct AttachGradsBackward : Node {
    variable_list apply(variable_list&& grad_outputs) override {
        variable_list result(2);
        for (size_t i = 0; i < 2; ++i) {
            if (should_compute_output(i)) {
                at::Tensor g = saved[i].unpack();
                TORCH_SYM_CHECK(g.sym_numel().sym_ne(0),
                                "kdfuse::attach_grads: an input that requires grad was given no gradient");
                result[i] = scaled(g, grad_outputs[0]);
            }
        }
        return first_order_only(std::move(result), "crd", "attach_grads", kScaledBackward);
    }
    std::string name() const override { return "kdfuse::attach_gradsBackward"; }
    void release_variables() override {
        saved[0].reset_data();
        saved[1].reset_data();
    }
    SavedVariable saved[2];
};

at::Tensor attach_grads(const at::Tensor& loss, const at::Tensor& a, const at::Tensor& b, const at::Tensor& grad_a,
                        const at::Tensor& grad_b) {
    for (const at::Tensor* t : {&a, &b, &grad_a, &grad_b}) {
        TORCH_CHECK_VALUE(t->device() == loss.device(), "torch.ops.kdfuse.attach_grads: all tensor arguments must be "
                          "on one device, got loss on ", loss.device(), " and another on ", t->device());
    }
    return loss.clone();
}

at::Tensor attach_grads_autograd(c10::DispatchKeySet ks, const at::Tensor& loss, const at::Tensor& a,
                                 const at::Tensor& b, const at::Tensor& grad_a, const at::Tensor& grad_b) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("kdfuse::attach_grads", "")
                         .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                           const at::Tensor&)>();
    const bool needs_grad = torch::autograd::compute_requires_grad(a, b);
    at::Tensor result;
    {
        at::AutoDispatchBelowADInplaceOrView guard;
        result = op.redispatch(ks & c10::after_autograd_keyset, loss, a, b, grad_a, grad_b);
    }
    if (needs_grad) {
        auto node = c10::make_intrusive<AttachGradsBackward>();
        node->saved[0] = SavedVariable(grad_a, false);
        node->saved[1] = SavedVariable(grad_b, false);
        node->set_next_edges(torch::autograd::collect_next_edges(a, b));
        torch::autograd::set_history(result, node);
    }
    return result;
}

// KDSVD: the losses of the consecutive layer pairs; the backward is a second library call (kdsvd_backward) that
// takes grad_output per pair (a middle layer's gradient mixes two pairs' upstream gradients).
struct KDSVDBackward : Node {
    variable_list apply(variable_list&& grad_outputs) override {
        static auto backward_op =
            c10::Dispatcher::singleton()
                .findSchemaOrThrow("kdfuse::kdsvd_backward", "")
                .typed<std::vector<at::Tensor>(at::TensorList, at::TensorList, int64_t, double, const at::Tensor&,
                                               const c10::List<bool>&)>();
        std::vector<at::Tensor> g_s, g_t;
        for (auto& s : saved_s) {
            g_s.push_back(s.unpack().detach());
        }
        for (auto& s : saved_t) {
            g_t.push_back(s.unpack().detach());
        }
        const size_t layers = num_outputs();
        c10::List<bool> need;
        for (size_t i = 0; i < layers; ++i) {
            need.push_back(should_compute_output(i));
        }
        std::vector<at::Tensor> grads;
        {
            at::AutoGradMode no_grad(false);
            grads = backward_op.call(g_s, g_t, k, gap_rtol, grad_outputs[0], need);
        }
        variable_list result(layers);
        for (size_t i = 0; i < layers; ++i) {
            if (need.get(i)) {
                result[i] = grads[i];
            }
        }
        return first_order_only(std::move(result), "kdsvd", "kdsvd",
                                "computes the gradients with torch.ops.kdfuse.kdsvd_backward");
    }
    std::string name() const override { return "kdfuse::kdsvdBackward"; }
    void release_variables() override {
        saved_s.clear();
        saved_t.clear();
    }
    std::vector<SavedVariable> saved_s, saved_t;
    int64_t k = 1;
    double gap_rtol = 0;
};

at::Tensor kdsvd_autograd(c10::DispatchKeySet ks, at::TensorList g_s, at::TensorList g_t, int64_t k,
                          double gap_rtol) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("kdfuse::kdsvd", "")
                         .typed<at::Tensor(at::TensorList, at::TensorList, int64_t, double)>();
    bool needs_grad = false;
    for (const auto& f : g_s) {
        needs_grad |= torch::autograd::compute_requires_grad(f);
    }
    at::Tensor losses;
    {
        at::AutoDispatchBelowADInplaceOrView guard;
        losses = op.redispatch(ks & c10::after_autograd_keyset, g_s, g_t, k, gap_rtol);
    }
    if (needs_grad) {
        auto node = c10::make_intrusive<KDSVDBackward>();
        torch::autograd::edge_list edges;
        for (const auto& f : g_s) {
            node->saved_s.emplace_back(f, false);
            edges.push_back(torch::autograd::impl::gradient_edge(f));
        }
        for (const auto& f : g_t) {
            node->saved_t.emplace_back(f.detach(), false);
        }
        node->k = k;
        node->gap_rtol = gap_rtol;
        node->set_next_edges(std::move(edges));
        torch::autograd::set_history(losses, node);
    }
    return losses;
}

// KDSVD summed over its pairs: the gradients come from the forward's one call, the backward scales them.
struct KDSVDSumBackward : Node {
    variable_list apply(variable_list&& grad_outputs) override {
        variable_list result(num_outputs());
        for (size_t i = 0; i < result.size(); ++i) {
            if (!should_compute_output(i)) {
                continue;
            }
            TORCH_CHECK(computed[i], "kdfuse::kdsvd_sum: g_s[", i, "] requires grad but the op was called with "
                        "need_grad_s[", i, "]=False, so its gradient was not computed");
            result[i] = scaled(saved[i].unpack(), grad_outputs[0]);
        }
        return first_order_only(std::move(result), "kdsvd", "kdsvd_sum", kScaledBackward);
    }
    std::string name() const override { return "kdfuse::kdsvd_sumBackward"; }
    void release_variables() override { saved.clear(); }
    std::vector<bool> computed;
    std::vector<SavedVariable> saved;
};

std::tuple<at::Tensor, std::vector<at::Tensor>> kdsvd_sum_autograd(c10::DispatchKeySet ks, at::TensorList g_s,
                                                                   at::TensorList g_t, int64_t k, double gap_rtol,
                                                                   const c10::List<bool>& need_grad_s) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("kdfuse::kdsvd_sum", "")
                         .typed<std::tuple<at::Tensor, std::vector<at::Tensor>>(
                             at::TensorList, at::TensorList, int64_t, double, const c10::List<bool>&)>();
    bool needs_grad = false;
    for (const auto& f : g_s) {
        needs_grad |= torch::autograd::compute_requires_grad(f);
    }
    std::tuple<at::Tensor, std::vector<at::Tensor>> result;
    {
        at::AutoDispatchBelowADInplaceOrView guard;
        result = op.redispatch(ks & c10::after_autograd_keyset, g_s, g_t, k, gap_rtol, need_grad_s);
    }
    if (needs_grad) {
        auto node = c10::make_intrusive<KDSVDSumBackward>();
        torch::autograd::edge_list edges;
        const auto& grads = std::get<1>(result);
        for (size_t l = 0; l < g_s.size(); ++l) {
            const bool computed = l < need_grad_s.size() && need_grad_s.get(l);
            node->computed.push_back(computed);
            node->saved.emplace_back(computed ? grads[l] : at::Tensor(), false);
            edges.push_back(torch::autograd::impl::gradient_edge(g_s[l]));
        }
        node->set_next_edges(std::move(edges));
        torch::autograd::set_history(std::get<0>(result), node);
    }
    return result;
}

void register_loss(torch::Library& m, const char* name, std::vector<GradInput> grads) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunctor(std::make_unique<LossAutograd>(name, std::move(grads))));
}

}  // namespace

// Naming: need_grad_<x> says whether the fused call computes the gradient of input <x>; a gradient not computed
// comes back as an empty (0,) tensor.
TORCH_LIBRARY(kdfuse, m) {
    m.set_python_module("kdfuse._meta");
    m.def("kd(Tensor y_s, Tensor y_t, Tensor? weight, float T, str reduction, bool need_grad_s, bool need_grad_t) -> "
          "(Tensor, Tensor, Tensor)");
    m.def("fitnet(Tensor f_s, Tensor f_t, bool need_grad_s) -> (Tensor, Tensor)");
    m.def("at(Tensor f_s, Tensor f_t, float p, bool need_grad_s) -> (Tensor, Tensor)");
    m.def("ft(Tensor f_s, Tensor f_t, float p1, float p2, bool need_grad_s) -> (Tensor, Tensor)");
    m.def("ab(Tensor s, Tensor t, float margin, bool seed_scaling, bool need_grad_s) -> (Tensor, Tensor)");
    m.def("ofd(Tensor s, Tensor t, Tensor? margin, str variant, bool need_grad_s) -> (Tensor, Tensor)");
    m.def("vid(Tensor pred_mean, Tensor target, Tensor log_scale, float eps, bool need_grad_pred, "
          "bool need_grad_log_scale) -> (Tensor, Tensor, Tensor)");
    m.def("sp(Tensor f_s, Tensor f_t, bool need_grad_s) -> (Tensor, Tensor)");
    m.def("cc(Tensor f_s, Tensor f_t, str variant, bool need_grad_s, bool need_grad_t) -> (Tensor, Tensor, Tensor)");
    m.def("pkt(Tensor f_s, Tensor f_t, bool need_grad_s) -> (Tensor, Tensor)");
    m.def("rkd(Tensor e_s, Tensor e_t, float w_d, float w_a, bool need_grad_s) -> (Tensor, Tensor)");
    m.def("nst(Tensor f_s, Tensor f_t, bool full_loss, bool need_grad_s) -> (Tensor, Tensor)");
    m.def("fsp(Tensor s_bot, Tensor s_top, Tensor t_bot, Tensor t_top, bool need_grad_bot, bool need_grad_top) -> "
          "(Tensor, Tensor, Tensor)");
    // CRD updates the banks, Z and (drawn contrasts) the Philox counter, a CPU int64 tensor [seed, offset].
    m.def("crd(Tensor v_s, Tensor v_t, Tensor(a!) memory_s, Tensor(b!) memory_t, Tensor? idx, Tensor? contrast_idx, "
          "Tensor(c!) z, Tensor(d!) philox, int k, float temperature, float momentum, str z_mode, float z_momentum, "
          "bool normalize_inputs, bool update_memory, bool need_grad_s, bool need_grad_t) -> (Tensor, Tensor, Tensor)");
    m.def("attach_grads(Tensor loss, Tensor a, Tensor b, Tensor grad_a, Tensor grad_b) -> Tensor");
    m.def("kdsvd(Tensor[] g_s, Tensor[] g_t, int k, float gap_rtol) -> Tensor");
    m.def("kdsvd_backward(Tensor[] g_s, Tensor[] g_t, int k, float gap_rtol, Tensor grad_losses, bool[] need_grad_s) "
          "-> Tensor[]");
    m.def("kdsvd_sum(Tensor[] g_s, Tensor[] g_t, int k, float gap_rtol, bool[] need_grad_s) -> (Tensor, Tensor[])");
    m.impl("attach_grads", c10::DispatchKey::CompositeExplicitAutograd, TORCH_FN(attach_grads));
}

TORCH_LIBRARY_IMPL(kdfuse, Autograd, m) {
    register_loss(m, "kd", {{0, 5}, {1, 6}});
    register_loss(m, "fitnet", {{0, 2}});
    register_loss(m, "at", {{0, 3}});
    register_loss(m, "ft", {{0, 4}});
    register_loss(m, "ab", {{0, 4}});
    register_loss(m, "ofd", {{0, 4}});
    register_loss(m, "vid", {{0, 4}, {2, 5}});
    register_loss(m, "sp", {{0, 2}});
    register_loss(m, "cc", {{0, 3}, {1, 4}});
    register_loss(m, "pkt", {{0, 2}});
    register_loss(m, "rkd", {{0, 4}});
    register_loss(m, "nst", {{0, 3}});
    register_loss(m, "fsp", {{0, 4}, {1, 5}});
    m.impl("attach_grads", TORCH_FN(attach_grads_autograd));
    m.impl("kdsvd", TORCH_FN(kdsvd_autograd));
    m.impl("kdsvd_sum", TORCH_FN(kdsvd_sum_autograd));
    // No autograd formula: crd mutates its inputs (its gradients go through attach_grads), kdsvd_backward runs
    // inside kdsvd's backward. Differentiating through them raises.
    m.impl("crd", torch::autograd::autogradNotImplementedFallback());
    m.impl("kdsvd_backward", torch::autograd::autogradNotImplementedFallback());
}

// crd's in-place updates bump the version counters of the tensors it mutates (the alias annotations).
TORCH_LIBRARY_IMPL(kdfuse, ADInplaceOrView, m) {
    m.impl("crd", torch::autograd::autogradNotImplementedInplaceOrViewFallback());
}
