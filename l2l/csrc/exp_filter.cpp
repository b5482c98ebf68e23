// The exponential filter of l2l.filters on the CPU, step by step in one pass over memory:
// causal       out[o, t, i] = a · out[o, t−1, i] + u[o, t, i]   (out[o, −1, i] = initial[o, i], or 0),
// anti-causal  out[o, t, i] = a · out[o, t+1, i] + u[o, t, i]   (out[o, T, i] = 0).
// u (O, T, I) contiguous: time-major storage is O = 1, batch-major O = B. Each (o, block of i) runs its own
// recursion; the blocks are spread over the threads. The products and sums are PyTorch's `a * prev + u` in the
// same order (no FMA contraction), so a float loop in PyTorch gives the same numbers.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

namespace {

constexpr int64_t kColumns = 256;   // columns per work item: one recursion over T steps on a contiguous slice

template <typename T>
void filter_slice(const T* __restrict u, const T* __restrict initial, T* __restrict out, int64_t steps,
                  int64_t stride, int64_t width, T a, bool reverse) {
  const int64_t first = reverse ? steps - 1 : 0;
  const int64_t step = reverse ? -1 : 1;
  const T* u_t = u + first * stride;
  T* out_t = out + first * stride;
  if (initial != nullptr) {
    for (int64_t i = 0; i < width; ++i) out_t[i] = a * initial[i] + u_t[i];
  } else {
    for (int64_t i = 0; i < width; ++i) out_t[i] = u_t[i];
  }
  for (int64_t k = 1; k < steps; ++k) {
    const T* prev = out_t;
    u_t += step * stride;
    out_t += step * stride;
    for (int64_t i = 0; i < width; ++i) out_t[i] = a * prev[i] + u_t[i];
  }
}

// u (O, T, I); initial (O, I) or absent (causal only). Returns out (O, T, I).
at::Tensor exp_filter(const at::Tensor& u, double decay, const c10::optional<at::Tensor>& initial_opt, bool reverse) {
  TORCH_CHECK(u.dim() == 3 && u.device().is_cpu(), "exp_filter: u must be a (O, T, I) CPU tensor");
  TORCH_CHECK(!(reverse && initial_opt.has_value()), "exp_filter: the anti-causal filter takes no initial value");
  const at::Tensor uc = u.contiguous();
  const int64_t outer = uc.size(0), steps = uc.size(1), width = uc.size(2);
  at::Tensor initial;
  if (initial_opt.has_value()) {
    initial = initial_opt->to(uc.scalar_type()).contiguous();
    TORCH_CHECK(initial.numel() == outer * width, "exp_filter: initial must have O·I entries");
  }
  at::Tensor out = at::empty_like(uc);
  if (uc.numel() == 0) return out;
  const int64_t blocks = (width + kColumns - 1) / kColumns;
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(steps * std::min(width, kColumns), 1));
  AT_DISPATCH_FLOATING_TYPES(uc.scalar_type(), "exp_filter", [&] {
    using T = scalar_t;
    const T* up = uc.data_ptr<T>();
    const T* ip = initial.defined() ? initial.data_ptr<T>() : nullptr;
    T* op = out.data_ptr<T>();
    const T a = static_cast<T>(decay);
    at::parallel_for(0, outer * blocks, grain, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t o = item / blocks, c0 = (item % blocks) * kColumns;
        const int64_t cols = std::min(kColumns, width - c0);
        const int64_t base = o * steps * width + c0;
        filter_slice<T>(up + base, ip ? ip + o * width + c0 : nullptr, op + base, steps, width, cols, a, reverse);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(l2l_filter, m) {
  m.def("exp_filter(Tensor u, float decay, Tensor? initial, bool reverse) -> Tensor");
}

TORCH_LIBRARY_IMPL(l2l_filter, CPU, m) {
  m.impl("exp_filter", &exp_filter);
}
