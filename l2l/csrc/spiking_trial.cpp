// The fused LIF/ALIF trial of l2l.spiking_trial on the CPU: the forward loop and its adjoint.
//
// Forward: step by step over all tasks, or (several threads, or per-task W beyond the cache) task by task; the
// recurrent input W z^{t-1} is gathered from the rows of Wᵀ of the neurons that spiked (event-driven: z is mostly 0).
// Backward: for a shared W one (B, n) x (n, n) product per step for the recurrent adjoint; for per-task W
// task by task like the forward; the rest elementwise.
// The math is written out in l2l/spiking_trial.py; this file repeats the loops only.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

namespace {

template <typename T>
inline T surrogate(T x, T gamma, int64_t kind) {
  T ax = x < 0 ? -x : x;
  if (kind == 0) return ax < 1 ? gamma * (1 - ax) : T(0);   // piecewise_linear
  if (kind == 1) return gamma / ((1 + ax) * (1 + ax));      // fast_sigmoid
  return gamma * std::exp(T(-0.5) * x * x);                 // gaussian
}

// One step's neuron update over a contiguous run of `count` (task, neuron) entries; drive = I^t + W z^{t-1}.
template <typename T, bool ADAPTIVE, bool ZETA>
void neuron_update(int64_t count, const T* __restrict drive, const T* __restrict z_prev, const T* __restrict r,
                   const T* __restrict beta, const T* __restrict zeta, T* __restrict v, T* __restrict a,
                   T* __restrict z_in, T* __restrict e, T* __restrict r_next, T* __restrict z_next, T alpha, T v_th,
                   T n_ref, T rho) {
  for (int64_t k = 0; k < count; ++k) {
    T vk = drive[k] + alpha * v[k];
    vk -= v_th * z_prev[k];
    v[k] = vk;
    T ek = vk - v_th;
    if constexpr (ADAPTIVE) {
      const T ak = a[k] * rho + z_in[k];
      a[k] = ak;
      ek -= ak * beta[k];
    }
    e[k] = ek;
    const T spike = (ek > T(0)) & (r[k] <= T(0)) ? T(1) : T(0);
    const T left = r[k] - T(1);
    r_next[k] = (left > T(0) ? left : T(0)) + n_ref * spike;
    z_in[k] = spike;
    if constexpr (ZETA) {
      z_next[k] = spike + zeta[k];
    } else {
      z_next[k] = spike;
    }
  }
}

// drive (n) += Σ over the neurons j that spiked of z_j · (row j of Wᵀ): the event-driven recurrent input.
template <typename T>
void add_recurrent(int64_t n, const T* __restrict z_prev, const T* __restrict w_t, T* __restrict drive) {
  for (int64_t j = 0; j < n; ++j) {
    const T s = z_prev[j];
    if (s == T(0)) continue;
    const T* __restrict row = w_t + j * n;
    for (int64_t i = 0; i < n; ++i) drive[i] += s * row[i];
  }
}

template <typename T, bool ADAPTIVE, bool ZETA>
void forward_kernel(const at::Tensor& current, const at::Tensor& w_t, const at::Tensor& zeta, const at::Tensor& beta,
                    at::Tensor& z, at::Tensor& excess, at::Tensor& refractory, at::Tensor& v, at::Tensor& a,
                    at::Tensor& z_in, double alpha, double v_th, double n_ref, double rho) {
  const int64_t steps = current.size(0), batch = current.size(1), n = current.size(2);
  const bool shared = w_t.dim() == 2;
  const T* cur = current.data_ptr<T>();
  const T* wt = w_t.data_ptr<T>();
  const T* zt = ZETA ? zeta.data_ptr<T>() : nullptr;
  const T* bt = ADAPTIVE ? beta.data_ptr<T>() : nullptr;  // (B·n,): β of each entry
  T* zp = z.data_ptr<T>();
  T* ep = excess.data_ptr<T>();
  T* rp = refractory.data_ptr<T>();
  T* vp = v.data_ptr<T>();
  T* ap = a.data_ptr<T>();
  T* zin = z_in.data_ptr<T>();
  const int64_t plane = batch * n;
  std::vector<T> drive(plane);
  // step t for the tasks [begin, end): drive = I^t + W z^{t-1} (gathered from the neurons that spiked), then the
  // neurons; the tasks' entries of every buffer are disjoint, so any order of (task, step) blocks that keeps each
  // task's steps in order gives the same numbers
  auto advance = [&](int64_t t, int64_t begin, int64_t end) {
    const int64_t k0 = begin * n, count = (end - begin) * n;
    const T* z_prev = zp + t * plane;
    std::copy(cur + t * plane + k0, cur + t * plane + k0 + count, drive.data() + k0);
    for (int64_t b = begin; b < end; ++b)
      add_recurrent<T>(n, z_prev + b * n, wt + (shared ? 0 : b * n * n), drive.data() + b * n);
    neuron_update<T, ADAPTIVE, ZETA>(count, drive.data() + k0, z_prev + k0, rp + t * plane + k0,
                                     ADAPTIVE ? bt + k0 : nullptr, ZETA ? zt + t * plane + k0 : nullptr, vp + k0,
                                     ap + k0, zin + k0, ep + t * plane + k0, rp + (t + 1) * plane + k0,
                                     zp + (t + 1) * plane + k0, T(alpha), T(v_th), T(n_ref), T(rho));
  };
  if (at::get_num_threads() > 1 || (!shared && plane * n * static_cast<int64_t>(sizeof(T)) > (4 << 20))) {
    // task by task over the whole trial: with several threads the tasks run in parallel with one fork per trial;
    // per-task W beyond the cache stays in cache for all of a task's steps (at B 100, n 400: 0.34 -> 0.24 s,
    // 1 thread)
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        for (int64_t t = 0; t < steps; ++t) advance(t, b, b + 1);
    });
    return;
  }
  // otherwise (measured faster there) time outermost: each step one contiguous (B, n) plane, tasks in parallel
  // when the plane is large enough to pay for the threads
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1));
  for (int64_t t = 0; t < steps; ++t)
    at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) { advance(t, begin, end); });
}

// current (T, B, n); w_t = W_recᵀ, (n, n) or (B, n, n), contiguous; zeta (T, B, n) or none; state (B, n);
// beta (n,) for ALIF (rho >= 0), none for LIF. Returns z (T+1, B, n), excess (T, B, n), refractory (T+1, B, n),
// and the final v, a, z_in (B, n).
std::vector<at::Tensor> spiking_forward(const at::Tensor& current, const at::Tensor& w_t,
                                        const c10::optional<at::Tensor>& zeta, const at::Tensor& v0,
                                        const c10::optional<at::Tensor>& a0, const at::Tensor& z0,
                                        const at::Tensor& r0, double alpha, double v_th, double n_ref, double rho,
                                        const c10::optional<at::Tensor>& beta) {
  TORCH_CHECK(current.device().is_cpu() && current.dim() == 3, "spiking_forward: current must be (T, B, n) on the CPU");
  const int64_t steps = current.size(0), batch = current.size(1), n = current.size(2);
  const bool adaptive = rho >= 0;
  auto cur = current.contiguous();
  auto wt = w_t.contiguous();
  at::Tensor zt = zeta.has_value() ? zeta->contiguous() : at::Tensor();
  auto z = at::empty({steps + 1, batch, n}, current.options());
  auto excess = at::empty({steps, batch, n}, current.options());
  auto refractory = at::empty({steps + 1, batch, n}, current.options());
  z[0].copy_(z0);
  refractory[0].copy_(r0);
  auto v = v0.clone().contiguous();
  auto a = adaptive ? a0->clone().contiguous() : at::zeros({batch, n}, current.options());
  auto z_in = z0.clone().contiguous();
  at::Tensor bt = adaptive ? beta->expand({batch, n}).contiguous() : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(current.scalar_type(), "spiking_forward", [&] {
    auto run = [&](auto adaptive_tag, auto zeta_tag) {
      forward_kernel<scalar_t, decltype(adaptive_tag)::value, decltype(zeta_tag)::value>(
          cur, wt, zt, bt, z, excess, refractory, v, a, z_in, alpha, v_th, n_ref, rho);
    };
    const bool has_zeta = zt.defined();
    if (adaptive && has_zeta) run(std::true_type{}, std::true_type{});
    else if (adaptive) run(std::true_type{}, std::false_type{});
    else if (has_zeta) run(std::false_type{}, std::true_type{});
    else run(std::false_type{}, std::false_type{});
  });
  return {z, excess, refractory, v, a, z_in};
}

// Σ_i a_i b_i with eight partial sums (vectorizable without reassociating the compiler's way).
template <typename T>
inline T dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int u = 0; u < 8; ++u) acc[u] += a[i + u] * b[i + u];
  T sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// The final state's gradients, which enter the last step only: z_in^{T-1} (after dE/dz^t is recorded: it is
// reached through the state, not through ζ), v^{T-1} and a^{T-1}.
template <typename T>
void add_final_state(int64_t count, const T* g_zin, const T* g_v, const T* g_a, const T* e, const T* r,
                     const T* beta, T* dv, T* da, T gamma, T inv_v_th, int64_t kind) {
  for (int64_t k = 0; k < count; ++k) {
    const T slope = r[k] <= 0 ? surrogate<T>(e[k] * inv_v_th, gamma, kind) * inv_v_th : T(0);
    const T d_e = g_zin ? g_zin[k] * slope : T(0);
    dv[k] += d_e + (g_v ? g_v[k] : T(0));
    if (da) da[k] += -beta[k] * d_e + (g_a ? g_a[k] : T(0));
  }
}

// Call f with std::true_type or std::false_type: a runtime flag as a template argument.
template <typename F>
void with_flag(bool flag, F&& f) {
  if (flag) f(std::true_type{});
  else f(std::false_type{});
}

// rec (n) = Σ_i δv_i · (row i of W): the recurrent adjoint Wᵀ δv of one task, as row updates (no reduction,
// vectorizable, no branch on the data).
template <typename T>
void recurrent_adjoint(int64_t n, const T* __restrict w, const T* __restrict dv, T* __restrict rec) {
  for (int64_t j = 0; j < n; ++j) rec[j] = T(0);
  for (int64_t i = 0; i < n; ++i) {
    const T s = dv[i];
    const T* __restrict row = w + i * n;
    for (int64_t j = 0; j < n; ++j) rec[j] += s * row[j];
  }
}

enum class Adjoint { kRows, kGemm, kWhereNeeded };

// s(e/v_th)·[r = 0]/v_th with the surrogate fixed at compile time (so the step's loop vectorizes).
template <typename T, int KIND>
inline T slope_of(T e, T r, T gamma, T inv_v_th) {
  return r <= T(0) ? surrogate<T>(e * inv_v_th, gamma, KIND) * inv_v_th : T(0);
}

// rec (n) = (Wᵀ δv)_j for the neurons j whose surrogate is non-zero at this step (all of them with `all`), 0
// elsewhere (those entries are multiplied by a zero slope). w_t: row j = the weights out of neuron j.
template <typename T>
void adjoint_where_needed(int64_t n, const T* __restrict w_t, const T* __restrict dv, const T* __restrict e,
                          const T* __restrict r, T gamma, T inv_v_th, int64_t kind, bool all, T* __restrict rec) {
  for (int64_t j = 0; j < n; ++j) {
    const bool needed = all || (r[j] <= T(0) && surrogate<T>(e[j] * inv_v_th, gamma, kind) != T(0));
    rec[j] = needed ? dot<T>(w_t + j * n, dv, n) : T(0);
  }
}

// One step of the adjoint over `count` contiguous entries, every input present (zeros where there is none).
// reset: v_th, or 0 when the recurrent paths are cut (then rec is 0 too).
template <typename T, int KIND, bool ADAPTIVE, bool TOTAL>
void adjoint_update(int64_t count, const T* __restrict g_z, const T* __restrict rec, const T* __restrict dv_next,
                    const T* __restrict da_next, const T* __restrict g_e, const T* __restrict e,
                    const T* __restrict r, const T* __restrict beta, T* __restrict total_z, T* __restrict dv,
                    T* __restrict da, T v_th, T reset, T alpha, T rho, T gamma) {
  const T inv_v_th = T(1) / v_th;
  for (int64_t k = 0; k < count; ++k) {
    T on_z = g_z[k] + rec[k] - reset * dv_next[k];
    if constexpr (TOTAL) total_z[k] = on_z;
    if constexpr (ADAPTIVE) on_z += da_next[k];
    const T d_e = on_z * slope_of<T, KIND>(e[k], r[k], gamma, inv_v_th) + g_e[k];
    dv[k] = d_e + alpha * dv_next[k];
    if constexpr (ADAPTIVE) da[k] = -beta[k] * d_e + rho * da_next[k];
  }
}

// The adjoint recursion. w (n, n) or (B, n, n) as in the forward pass (not transposed); z, excess, refractory
// from spiking_forward; incoming gradients may be absent. Returns dE/dI (T, B, n), dE/dz^t total (T, B, n)
// (empty unless want_total_z), and the initial state's gradients g_v0, g_a0, g_z0 (B, n).
std::vector<at::Tensor> spiking_backward(const at::Tensor& w, const at::Tensor& z, const at::Tensor& excess,
                                         const at::Tensor& refractory, const c10::optional<at::Tensor>& g_z_opt,
                                         const c10::optional<at::Tensor>& g_e_opt,
                                         const c10::optional<at::Tensor>& g_v_opt,
                                         const c10::optional<at::Tensor>& g_a_opt,
                                         const c10::optional<at::Tensor>& g_zin_opt, double alpha, double v_th,
                                         double gamma, int64_t kind, double rho,
                                         const c10::optional<at::Tensor>& beta_opt, bool recurrent, bool want_total_z) {
  const int64_t steps = excess.size(0), batch = excess.size(1), n = excess.size(2);
  const bool adaptive = rho >= 0, shared = w.dim() == 2;
  auto contiguous = [](const c10::optional<at::Tensor>& t) { return t.has_value() ? t->contiguous() : at::Tensor(); };
  at::Tensor g_z = contiguous(g_z_opt), g_e = contiguous(g_e_opt), g_v = contiguous(g_v_opt);
  at::Tensor g_a = adaptive ? contiguous(g_a_opt) : at::Tensor(), g_zin = contiguous(g_zin_opt);
  at::Tensor beta = adaptive ? beta_opt->expand({batch, n}).contiguous() : at::Tensor();
  auto wc = w.contiguous();
  auto w_t = w.transpose(-1, -2).contiguous();  // row j: the weights out of neuron j
  auto ec = excess.contiguous(), rc = refractory.contiguous();
  auto delta_v = at::empty({steps, batch, n}, excess.options());
  at::Tensor total_z = want_total_z ? at::empty({steps, batch, n}, excess.options()) : at::Tensor();
  std::vector<at::Tensor> da_buf = {at::empty({batch, n}, excess.options()), at::empty({batch, n}, excess.options())};
  const int64_t plane = batch * n;
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(n, 1));
  AT_DISPATCH_FLOATING_TYPES(excess.scalar_type(), "spiking_backward", [&] {
    using T = scalar_t;
    const T* gz = ptr_or_null<T>(g_z);
    const T* ge = ptr_or_null<T>(g_e);
    const T* bt = ptr_or_null<T>(beta);
    const T* wt = w_t.data_ptr<T>();
    T* dvp = delta_v.data_ptr<T>();
    T* tz = want_total_z ? total_z.data_ptr<T>() : nullptr;
    const T* wr = wc.data_ptr<T>();
    // how Wᵀ δv^{t+1} is formed. A shared W, 8 tasks or more (or a large W): one (B, n) x (n, n) product for all
    // tasks per step (W read once per step, not once per task: about twice as fast as row updates at B = 32,
    // n = 100; below 8 tasks the call's own cost outweighs that), else row updates. Per-task W: the recursion runs
    // task by task, so a task's W stays in cache over its whole trial: row updates while it fits in 1 MiB (half the
    // time of dot products where the surrogate is non-zero at B = 100, n = 400, float32), else those dot products
    // (a W read from memory at every step: only the rows needed)
    const bool large = batch * n * n * static_cast<int64_t>(sizeof(T)) > (4 << 20);
    const bool task_fits = n * n * static_cast<int64_t>(sizeof(T)) <= (1 << 20);
    const Adjoint strategy = shared ? (large || batch >= 8 ? Adjoint::kGemm : Adjoint::kRows)
                                    : (task_fits ? Adjoint::kRows : Adjoint::kWhereNeeded);
    const std::vector<T> zeros(plane, T(0));  // what is absent: no gradient, nothing after the last step
    std::vector<T> rec(plane, T(0));
    // One step t of the recursion for the tasks [begin, end): their Wᵀ δv^{t+1} (unless the GEMM formed it for all
    // tasks), then δv^t, δa^t and the total dE/dz^t.
    auto run_step = [&](int64_t t, int64_t begin, int64_t end) {
      const bool last = t == steps - 1, with_rec = recurrent && !last;
      const T* dv_next = last ? zeros.data() : dvp + (t + 1) * plane;
      T* da = adaptive ? da_buf[t % 2].data_ptr<T>() : nullptr;
      const T* da_next = adaptive && !last ? da_buf[(t + 1) % 2].data_ptr<T>() : zeros.data();
      const T* e_t = ec.data_ptr<T>() + t * plane;
      const T* r_t = rc.data_ptr<T>() + t * plane;
      const T* g_z_t = gz ? gz + (t + 1) * plane : zeros.data();
      const T* g_e_t = ge ? ge + t * plane : zeros.data();
      const T* rec_t = with_rec ? rec.data() : zeros.data();
      if (with_rec && strategy == Adjoint::kRows) {
        for (int64_t b = begin; b < end; ++b)
          recurrent_adjoint<T>(n, wr + (shared ? 0 : b * n * n), dv_next + b * n, rec.data() + b * n);
      } else if (with_rec && strategy == Adjoint::kWhereNeeded) {
        for (int64_t b = begin; b < end; ++b)
          adjoint_where_needed<T>(n, wt + b * n * n, dv_next + b * n, e_t + b * n, r_t + b * n, T(gamma),
                                  T(1) / T(v_th), kind, tz != nullptr, rec.data() + b * n);
      }
      const int64_t k0 = begin * n, count = (end - begin) * n;
      T* dv_t = dvp + t * plane + k0;
      T* da_t = adaptive ? da + k0 : nullptr;
      const T reset = recurrent ? T(v_th) : T(0);
      auto step = [&](auto kind_tag, auto adaptive_tag, auto total_tag) {
        adjoint_update<T, decltype(kind_tag)::value, decltype(adaptive_tag)::value, decltype(total_tag)::value>(
            count, g_z_t + k0, rec_t + k0, dv_next + k0, da_next + k0, g_e_t + k0, e_t + k0, r_t + k0,
            adaptive ? bt + k0 : nullptr, tz ? tz + t * plane + k0 : nullptr, dv_t, da_t, T(v_th), reset,
            T(alpha), T(rho), T(gamma));
      };
      with_flag(adaptive, [&](auto adaptive_tag) {
        with_flag(tz != nullptr, [&](auto total_tag) {
          if (kind == 0) step(std::integral_constant<int, 0>{}, adaptive_tag, total_tag);
          else if (kind == 1) step(std::integral_constant<int, 1>{}, adaptive_tag, total_tag);
          else step(std::integral_constant<int, 2>{}, adaptive_tag, total_tag);
        });
      });
      if (last && (g_zin.defined() || g_v.defined() || g_a.defined())) {
        auto at_k = [&](const at::Tensor& g) { return g.defined() ? g.data_ptr<T>() + k0 : nullptr; };
        add_final_state<T>(count, at_k(g_zin), at_k(g_v), at_k(g_a), e_t + k0, r_t + k0,
                           adaptive ? bt + k0 : nullptr, dv_t, da_t, T(gamma), T(1) / T(v_th), kind);
      }
    };
    if (shared) {  // step by step, all tasks at once (W is shared: one GEMM, or row updates, per step)
      for (int64_t t = steps - 1; t >= 0; --t) {
        if (recurrent && t < steps - 1 && strategy == Adjoint::kGemm) {
          auto out = at::from_blob(rec.data(), {batch, n}, excess.options());
          at::mm_out(out, delta_v[t + 1], wc);
        }
        at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) { run_step(t, begin, end); });
      }
    } else {  // task by task, each over the whole trial: its own W stays in cache for all its steps (the tasks'
              // recursions are independent; every number is the same as step by step)
      at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b)
          for (int64_t t = steps - 1; t >= 0; --t) run_step(t, b, b + 1);
      });
    }
  });
  auto dv0 = delta_v[0];
  auto g_v0 = dv0 * alpha;
  at::Tensor g_z0 = shared ? at::mm(dv0, w) : at::bmm(dv0.unsqueeze(1), w).squeeze(1);
  g_z0.sub_(dv0, v_th);
  if (g_z.defined()) g_z0.add_(g_z[0]);
  at::Tensor g_a0;
  if (adaptive) {
    g_z0.add_(da_buf[0]);  // a^0 = ρ a0 + z_in^{-1}, and z_in^{-1} is the initial z; t = 0 wrote buffer 0
    g_a0 = da_buf[0] * rho;
  }
  return {delta_v, want_total_z ? total_z : at::empty({0}, excess.options()), g_v0,
          adaptive ? g_a0 : at::empty({0}, excess.options()), g_z0};
}

// out (n) += a · x (n)
template <typename T>
inline void scaled_add(int64_t n, T a, const T* __restrict x, T* __restrict out) {
  for (int64_t i = 0; i < n; ++i) out[i] += a * x[i];
}

// The indices j < m with z_j ≠ 0 into idx (m entries of scratch), in order; returns how many. Without branches:
// a branch per input mispredicts at spike densities of a few percent.
template <typename T>
inline int64_t nonzero_indices(int64_t m, const T* __restrict z, int64_t* __restrict idx) {
  int64_t count = 0;
  for (int64_t j = 0; j < m; ++j) {
    idx[count] = j;
    count += z[j] != T(0);
  }
  return count;
}

// row j of g_rows (m, n) += z_j · δv for every input j with z_j ≠ 0. idx: m entries of scratch.
template <typename T>
inline void add_events(int64_t m, int64_t n, const T* __restrict z, const T* __restrict dv, T* __restrict g_rows,
                       int64_t* __restrict idx) {
  const int64_t count = nonzero_indices<T>(m, z, idx);
  for (int64_t c = 0; c < count; ++c) scaled_add<T>(n, z[idx[c]], dv, g_rows + idx[c] * n);
}

// current (T, B, n) = x Wᵀ for inputs x (T, B, m) that are mostly 0 (spikes; any strides, the last one 1): each
// row sums z_j · (row j of Wᵀ) over its non-zero inputs, in input order; rows are independent (spread over the
// threads). Above one non-zero entry in eight (estimated on every eighth step) one matrix product instead.
// w_t (m, n) = Wᵀ.
at::Tensor spike_current(const at::Tensor& x, const at::Tensor& w_t) {
  TORCH_CHECK(x.dim() == 3 && w_t.dim() == 2 && x.size(2) == w_t.size(0), "spike_current: x (T, B, m), w_t (m, n)");
  const int64_t steps = x.size(0), batch = x.size(1), m = x.size(2), n = w_t.size(1);
  const at::Tensor xs = x.stride(2) == 1 ? x : x.contiguous();
  const at::Tensor wt = w_t.contiguous();
  const at::Tensor sample = xs.slice(0, 0, steps, 8);
  if (at::count_nonzero(sample).item<int64_t>() * 8 > sample.numel()) return at::matmul(xs, wt);
  at::Tensor out = at::zeros({steps, batch, n}, wt.options());
  AT_DISPATCH_FLOATING_TYPES(wt.scalar_type(), "spike_current", [&] {
    using T = scalar_t;
    const T* xp = xs.data_ptr<T>();
    const T* w = wt.data_ptr<T>();
    T* op = out.data_ptr<T>();
    const int64_t st = xs.stride(0), sb = xs.stride(1);
    at::parallel_for(0, steps * batch, 64, [&](int64_t r0, int64_t r1) {
      std::vector<int64_t> idx(m);
      for (int64_t r = r0; r < r1; ++r) {
        const T* xr = xp + (r / batch) * st + (r % batch) * sb;
        T* __restrict row = op + r * n;
        const int64_t count = nonzero_indices<T>(m, xr, idx.data());
        for (int64_t c = 0; c < count; ++c) scaled_add<T>(n, xr[idx[c]], w + idx[c] * n, row);
      }
    });
  });
  return out;
}

constexpr int64_t kEventChunks = 8;   // shared W: the steps' rows are cut into this many parts, summed in order

// dE/dW = Σ_t δv^t ⊗ z^{t-1}, over all tasks (shared W: (n, m)) or per task (B, n, m), as the sum over the entries
// of z^{t-1} that are not 0 (spikes: most are 0) of z_j · δv^t. Built transposed: row j collects input j's events.
// Per-task W: task by task, in step order. Shared W: the (t, b) rows are cut into kEventChunks consecutive parts,
// each summed into its own accumulator and the accumulators added in order, so each thread reads its part of δv
// and z once and the numbers do not depend on the thread count. Above one non-zero entry in eight (estimated on
// every eighth step; dense z: ζ added to the spikes, high rates) one matrix product instead.
// delta_v (T, B, n), z_prev (T, B, m).
at::Tensor weight_gradient(const at::Tensor& delta_v, const at::Tensor& z_prev, bool per_task) {
  const int64_t steps = delta_v.size(0), batch = delta_v.size(1), n = delta_v.size(2), m = z_prev.size(2);
  const at::Tensor dv = delta_v.contiguous(), zp = z_prev.contiguous();
  const at::Tensor sample = zp.slice(0, 0, steps, 8);
  if (at::count_nonzero(sample).item<int64_t>() * 8 > sample.numel()) {
    return per_task ? at::bmm(dv.permute({1, 2, 0}), zp.transpose(0, 1))
                    : at::mm(dv.reshape({-1, n}).t(), zp.reshape({-1, m}));
  }
  const int64_t rows = steps * batch;
  const int64_t parts = per_task ? batch : std::min(kEventChunks, std::max<int64_t>(rows, 1));
  at::Tensor acc = at::zeros({parts, m, n}, dv.options());
  AT_DISPATCH_FLOATING_TYPES(dv.scalar_type(), "weight_gradient", [&] {
    using T = scalar_t;
    const T* d = dv.data_ptr<T>();
    const T* z = zp.data_ptr<T>();
    T* g = acc.data_ptr<T>();
    at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
      std::vector<int64_t> idx(m);
      for (int64_t p = p0; p < p1; ++p) {
        T* g_p = g + p * m * n;
        if (per_task) {
          for (int64_t t = 0; t < steps; ++t) {
            const int64_t row = t * batch + p;
            add_events<T>(m, n, z + row * m, d + row * n, g_p, idx.data());
          }
        } else {
          for (int64_t row = rows * p / parts; row < rows * (p + 1) / parts; ++row)
            add_events<T>(m, n, z + row * m, d + row * n, g_p, idx.data());
        }
      }
    });
  });
  if (!per_task) {   // the parts' sums added in part order (whatever the threads did)
    AT_DISPATCH_FLOATING_TYPES(dv.scalar_type(), "weight_gradient_parts", [&] {
      using T = scalar_t;
      T* g = acc.data_ptr<T>();
      for (int64_t p = 1; p < parts; ++p)
        for (int64_t k = 0; k < m * n; ++k) g[k] += g[p * m * n + k];
    });
  }
  const at::Tensor g_t = per_task ? acc : acc[0];
  return g_t.transpose(-1, -2).contiguous();
}

}  // namespace

TORCH_LIBRARY(l2l_spiking, m) {
  m.def("forward(Tensor current, Tensor w_t, Tensor? zeta, Tensor v0, Tensor? a0, Tensor z0, Tensor r0, float alpha, "
        "float v_th, float n_ref, float rho, Tensor? beta) -> Tensor[]");
  m.def("backward(Tensor w, Tensor z, Tensor excess, Tensor refractory, Tensor? g_z, Tensor? g_e, Tensor? g_v, "
        "Tensor? g_a, Tensor? g_zin, float alpha, float v_th, float gamma, int kind, float rho, Tensor? beta, "
        "bool recurrent, bool want_total_z) -> Tensor[]");
  m.def("weight_gradient(Tensor delta_v, Tensor z_prev, bool per_task) -> Tensor");
  m.def("spike_current(Tensor x, Tensor w_t) -> Tensor");
}

TORCH_LIBRARY_IMPL(l2l_spiking, CPU, m) {
  m.impl("forward", &spiking_forward);
  m.impl("backward", &spiking_backward);
  m.impl("weight_gradient", &weight_gradient);
  m.impl("spike_current", &spike_current);
}
