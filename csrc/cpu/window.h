#pragma once
namespace zg {
// Geometry of a sliding-window op on an NHWC input: input n*h*w*c, window kh*kw, output ho*wo,
// stride (sh, sw), dilation (dh, dw), padding top/bottom/left/right. Mirrors kernels/_validate.py.
struct Window {
  long n, h, w, c, kh, kw, ho, wo, sh, sw, dh, dw, pt, pb, pl, pr;
};
}  // namespace zg
