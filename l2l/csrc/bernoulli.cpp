// Bernoulli spikes from torch's CPU generator in one pass: out = (u < p), u the number torch.rand(p.shape,
// generator=g, dtype=p.dtype) would draw at the same position from the same generator state; the generator ends
// in the state torch.rand leaves it in. torch draws through a serial kernel, one call per number; here the
// generator's MT19937 words are regenerated and tempered in blocks and compared with p in the same loop.
//
// The generator's stream (what torch's CPU generator returns): MT19937 (Matsumoto & Nishimura 1998) words; a
// float32 uniform is (w & (2^24 − 1)) · 2^-24 of one word w, a float64 uniform (x & (2^53 − 1)) · 2^-53 of
// x = (w1 << 32) | w2, two consecutive words. l2l/native.py checks these numbers against torch.rand once per process
// and does not use this kernel if they differ (a torch whose generator changed).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/MT19937RNGEngine.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

namespace {

constexpr int kWords = 624;     // MT19937 state size n
constexpr int kShift = 397;     // its middle offset m
constexpr uint32_t kTwistMatrix = 0x9908b0dfU;

inline uint32_t twisted(uint32_t upper_from, uint32_t lower_from) {
  const uint32_t y = (upper_from & 0x80000000U) | (lower_from & 0x7fffffffU);
  return (y >> 1) ^ ((lower_from & 1U) ? kTwistMatrix : 0U);
}

// The next 624 state words, in place (the MT19937 recurrence).
void regenerate(uint32_t* s) {
  for (int k = 0; k < kWords - kShift; ++k) s[k] = s[k + kShift] ^ twisted(s[k], s[k + 1]);
  for (int k = kWords - kShift; k < kWords - 1; ++k) s[k] = s[k + kShift - kWords] ^ twisted(s[k], s[k + 1]);
  s[kWords - 1] = s[kShift - 1] ^ twisted(s[kWords - 1], s[0]);
}

inline uint32_t tempered(uint32_t y) {
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680U;
  y ^= (y << 15) & 0xefc60000U;
  y ^= y >> 18;
  return y;
}

// The generator's next `count` words into out, advancing its state as that many single draws would: torch's
// engine reads word `next_` and counts `left_` down, regenerating the state when it would reach 0.
void next_words(at::mt19937_data_pod& d, uint32_t* __restrict out, int64_t count) {
  int64_t done = 0;
  while (done < count) {
    if (d.left_ <= 1) {
      regenerate(d.state_.data());
      d.left_ = kWords + 1;
      d.next_ = 0;
    }
    const int64_t take = std::min<int64_t>(d.left_ - 1, count - done);
    const uint32_t* __restrict s = d.state_.data() + d.next_;
    for (int64_t j = 0; j < take; ++j) out[done + j] = tempered(s[j]);
    d.next_ += static_cast<uint32_t>(take);
    d.left_ -= static_cast<int>(take);
    done += take;
  }
}

constexpr int64_t kChunk = 4096;   // outputs per block of words (16-32 KiB of words: stays in L1/L2)

void below_float(at::mt19937_data_pod& d, const float* p, float* out, int64_t n) {
  uint32_t words[kChunk];
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t m = std::min(kChunk, n - start);
    next_words(d, words, m);
    for (int64_t j = 0; j < m; ++j) {
      const float u = static_cast<float>(words[j] & 0xffffffU) * 5.9604644775390625e-08f;   // · 2^-24, exact
      out[start + j] = u < p[start + j] ? 1.0f : 0.0f;
    }
  }
}

void below_double(at::mt19937_data_pod& d, const double* p, double* out, int64_t n) {
  uint32_t words[2 * kChunk];
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t m = std::min(kChunk, n - start);
    next_words(d, words, 2 * m);
    for (int64_t j = 0; j < m; ++j) {
      const uint64_t x = (static_cast<uint64_t>(words[2 * j]) << 32) | words[2 * j + 1];
      const double u = static_cast<double>(x & ((uint64_t{1} << 53) - 1)) * 1.1102230246251565e-16;   // · 2^-53
      out[start + j] = u < p[start + j] ? 1.0 : 0.0;
    }
  }
}

// out (p's shape and dtype, any strides without overlap) = 1 where the generator's uniform number is below p, else
// 0; the numbers are drawn in p's row-major order whatever out's layout (e.g. a time-major buffer behind (B, T, ...)
// views), one row of the trailing dimensions over which out is contiguous at a time.
at::Tensor bernoulli_below_(at::Tensor out, const at::Tensor& p, std::optional<at::Generator> generator) {
  TORCH_CHECK(p.device().is_cpu() && out.device().is_cpu(), "bernoulli_below_: CPU tensors only");
  TORCH_CHECK(p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble,
              "bernoulli_below_: p must be float32 or float64");
  TORCH_CHECK(out.scalar_type() == p.scalar_type() && out.sizes() == p.sizes(),
              "bernoulli_below_: out must have p's shape and dtype");
  const at::Tensor pc = p.contiguous();
  const int64_t dims = out.dim();
  int64_t inner = 1, lead = dims;   // out is contiguous over its dimensions [lead, dims): rows of `inner` entries
  while (lead > 0 && (out.size(lead - 1) == 1 || out.stride(lead - 1) == inner)) inner *= out.size(--lead);
  const int64_t rows = inner == 0 ? 0 : pc.numel() / inner;
  auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(generator, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  at::mt19937 engine = gen->engine();
  at::mt19937_data_pod d = engine.data();
  std::vector<int64_t> index(static_cast<size_t>(lead), 0);   // the row's position in out's leading dimensions
  int64_t offset = 0;                                          // and its element offset in out
  for (int64_t row = 0; row < rows; ++row) {
    if (p.scalar_type() == at::kFloat) {
      below_float(d, pc.data_ptr<float>() + row * inner, out.data_ptr<float>() + offset, inner);
    } else {
      below_double(d, pc.data_ptr<double>() + row * inner, out.data_ptr<double>() + offset, inner);
    }
    for (int64_t k = lead - 1; k >= 0; --k) {   // next row, row-major
      offset += out.stride(k);
      if (++index[k] < out.size(k)) break;
      offset -= out.stride(k) * out.size(k);
      index[k] = 0;
    }
  }
  engine.set_data(d);
  gen->set_engine(engine);
  return out;
}

}  // namespace

TORCH_LIBRARY(l2l_random, m) {
  m.def("bernoulli_below_(Tensor(a!) out, Tensor p, Generator? generator) -> Tensor(a!)");
}

TORCH_LIBRARY_IMPL(l2l_random, CPU, m) {
  m.impl("bernoulli_below_", &bernoulli_below_);
}
