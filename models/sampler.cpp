#include "models/sampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace pensieve {

Status validate(const SamplingParams& p) {
  if (!(p.temperature >= 0) || !std::isfinite(p.temperature))
    return errorf("temperature is %g, expected a number >= 0", double(p.temperature));
  if (p.top_k < 0) return errorf("top_k is %d, expected >= 0", p.top_k);
  if (!(p.top_p > 0 && p.top_p <= 1)) return errorf("top_p is %g, expected a number in (0, 1]", double(p.top_p));
  if (!(p.min_p >= 0 && p.min_p <= 1)) return errorf("min_p is %g, expected a number in [0, 1]", double(p.min_p));
  if (!(p.repetition_penalty > 0) || !std::isfinite(p.repetition_penalty))
    return errorf("repetition_penalty is %g, expected > 0", double(p.repetition_penalty));
  if (!(std::fabs(p.presence_penalty) <= 2)) return errorf("presence_penalty is %g, expected -2..2", double(p.presence_penalty));
  if (!(std::fabs(p.frequency_penalty) <= 2)) return errorf("frequency_penalty is %g, expected -2..2", double(p.frequency_penalty));
  return Status::Ok();
}

Sampler::Sampler(const SamplingParams& p)
    : p_(p), rng_(p.has_seed ? p.seed : uint64_t(std::chrono::steady_clock::now().time_since_epoch().count())) {}

int32_t Sampler::sample(float* logits, int64_t vocab, const std::vector<int32_t>& prompt,
                        const std::vector<int32_t>& output) {
  // Penalties, each applied once per distinct token (as HF's gather/scatter does); counts_ is
  // zero between calls and only the touched entries are reset.
  counts_.resize(size_t(vocab), 0);
  auto valid = [&](int32_t t) { return t >= 0 && t < vocab; };
  if (p_.repetition_penalty != 1.0f) {
    for (const auto* seq : {&prompt, &output})
      for (int32_t t : *seq)
        if (valid(t) && counts_[size_t(t)]++ == 0)
          logits[t] = logits[t] > 0 ? logits[t] / p_.repetition_penalty : logits[t] * p_.repetition_penalty;
    for (const auto* seq : {&prompt, &output})
      for (int32_t t : *seq)
        if (valid(t)) counts_[size_t(t)] = 0;
  }
  if (p_.presence_penalty != 0 || p_.frequency_penalty != 0) {
    for (int32_t t : output)
      if (valid(t)) ++counts_[size_t(t)];
    for (int32_t t : output) {
      if (!valid(t) || counts_[size_t(t)] == 0) continue;
      logits[t] -= p_.presence_penalty + p_.frequency_penalty * float(counts_[size_t(t)]);
      counts_[size_t(t)] = 0;
    }
  }

  if (p_.temperature == 0) {
    int64_t best = 0;
    for (int64_t i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;
    return int32_t(best);
  }

  // Candidates (logit / T, logit, id). top-k and top-p need the best ones in order (by logit, then
  // id: the order a GPU top-k returns); only as many are sorted as the filters can keep: k, or a
  // prefix grown until its mass reaches top_p.
  cand_.resize(size_t(vocab));
  float max_logit = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) {
    cand_[size_t(i)] = {logits[i] / p_.temperature, logits[i], int32_t(i)};
    max_logit = std::max(max_logit, cand_[size_t(i)].scaled);
  }
  auto weight = [&](size_t i) { return std::exp(double(cand_[i].scaled - max_logit)); };
  auto better = [](const Cand& a, const Cand& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
  size_t n = cand_.size();
  if (p_.top_k > 0) {
    n = std::min(size_t(p_.top_k), n);
    std::partial_sort(cand_.begin(), cand_.begin() + std::ptrdiff_t(n), cand_.end(), better);
  } else if (p_.top_p < 1) {
    double total = 0;
    for (size_t i = 0; i < cand_.size(); ++i) total += weight(i);
    for (size_t sorted = 64;; sorted *= 8) {
      sorted = std::min(sorted, cand_.size());
      std::partial_sort(cand_.begin(), cand_.begin() + std::ptrdiff_t(sorted), cand_.end(), better);
      double mass = 0;
      for (size_t i = 0; i < sorted; ++i) mass += weight(i);
      if (sorted == cand_.size() || mass >= p_.top_p * total) {
        n = sorted;
        break;
      }
    }
  }
  return draw(n, max_logit);
}

int Sampler::candidates_needed(int max_k) const {
  if (p_.repetition_penalty != 1.0f || p_.presence_penalty != 0 || p_.frequency_penalty != 0) return 0;
  if (p_.temperature == 0) return 1;
  if (p_.top_k > 0 && p_.top_k <= max_k) return p_.top_k;
  return 0;
}

int32_t Sampler::sample_top(const float* values, const int32_t* ids, int k) {
  if (p_.temperature == 0) return ids[0];
  cand_.resize(size_t(k));
  for (int i = 0; i < k; ++i) cand_[size_t(i)] = {values[i] / p_.temperature, values[i], ids[i]};
  // The row's largest scaled logit is that of its largest logit (dividing by T > 0 keeps order).
  return draw(size_t(k), cand_[0].scaled);
}

int32_t Sampler::draw(size_t n, float max_logit) {
  auto weight = [&](size_t i) { return std::exp(double(cand_[i].scaled - max_logit)); };
  // top-p over the (renormalized) sorted candidates: the smallest prefix with mass >= top_p.
  if (p_.top_p < 1) {
    double total = 0;
    for (size_t i = 0; i < n; ++i) total += weight(i);
    double mass = 0;
    size_t i = 0;
    while (i < n) {
      mass += weight(i++);
      if (mass >= p_.top_p * total) break;
    }
    n = i;
  }
  // min-p: keep tokens with p >= min_p · p_max, i.e. logit >= max + ln(min_p) (order not needed).
  if (p_.min_p > 0) {
    float cut = max_logit + std::log(p_.min_p);
    n = size_t(std::partition(cand_.begin(), cand_.begin() + std::ptrdiff_t(n),
                              [&](const Cand& c) { return c.scaled >= cut; }) - cand_.begin());
  }
  double kept = 0;
  for (size_t i = 0; i < n; ++i) kept += weight(i);
  double r = std::uniform_real_distribution<double>(0.0, kept)(rng_);
  for (size_t i = 0; i < n; ++i) {
    r -= weight(i);
    if (r < 0) return cand_[i].id;
  }
  return cand_[n - 1].id;
}

}  // namespace pensieve
