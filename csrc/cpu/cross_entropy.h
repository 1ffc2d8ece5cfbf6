// Softmax cross-entropy, a classifier's loss, fused: one pass over each row of logits gives the
// softmax, the loss and (backward) the gradient, where NumPy takes a dozen array operations.
#pragma once

#include <cstdint>

namespace zg {

// z (n, c) logits, labels (n,) -> probs (n, c), the softmax of each row, and *loss, the mean over
// rows of log(sum(exp(z - max))) - (z[label] - max), each row in T and their sum in double, in
// row order. False (nothing written that can be trusted) when a label is outside [0, c).
template <class T>
bool softmax_cross_entropy(const T* z, const std::int64_t* labels, long n, long c, T* probs, T* loss);

// The gradient of that loss for its gradient dloss: dz = (probs - onehot(labels)) * (dloss / n).
// False when a label is outside [0, c) (dz then incomplete).
template <class T>
bool softmax_cross_entropy_backward(const T* probs, const std::int64_t* labels, long n, long c, T dloss, T* dz);

}  // namespace zg
