// The register-tiled products (detail/head_products.hpp, detail/panel_product.hpp) against a plain double loop,
// over shapes that take every tile, remainder tile and column group (rows 1..40, inner sizes 1..300 across the
// k blocks, widths 1..70 across whole and partial packets), in float and double; and their address
// independence: a row computed at another offset, inside a larger buffer with other strides, gives the same
// bits. ./build.sh native runs it again for AVX2 or AVX-512.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "seqattn/core/random.hpp"
#include "seqattn/detail/head_products.hpp"
#include "seqattn/detail/panel_product.hpp"

using namespace seqattn;
namespace head = seqattn::detail::head;

namespace {

template <class S>
Matrix<S> random_matrix(Index rows, Index cols, Rng& rng) {
  Matrix<S> m(rows, cols);
  for (Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<S>(rng.uniform(-1.0, 1.0));
  return m;
}

template <class S>
double tolerance() {
  return std::is_same_v<S, float> ? 2e-5 : 1e-13;
}

// max over elements of |got - want| / (1 + sum |terms|), want and the term sums in double
template <class S>
void expect_close(const Matrix<S>& got, const Eigen::MatrixXd& want, const Eigen::MatrixXd& scale,
                  const std::string& what) {
  ASSERT_EQ(got.rows(), want.rows());
  ASSERT_EQ(got.cols(), want.cols());
  double worst = 0;
  for (Index i = 0; i < want.rows(); ++i)
    for (Index j = 0; j < want.cols(); ++j)
      worst = std::max(worst, std::abs(double(got(i, j)) - want(i, j)) / (1.0 + scale(i, j)));
  EXPECT_LE(worst, tolerance<S>()) << what;
}

struct Shape {
  Index rows, k, n;
};

std::vector<Shape> shapes() {
  std::vector<Shape> out;
  for (Index rows : {1, 5, 6, 7, 23, 24, 25, 40})
    for (Index k : {1, 3, 16, 17, 129, 300})
      for (Index n : {1, 4, 8, 15, 16, 17, 33, 64, 70}) out.push_back({rows, k, n});
  return out;
}

template <class S>
void check_panel_product_and_gradient() {
  Rng rng(7);
  for (const Shape& s : shapes()) {
    const std::string what = detail::cat("rows ", s.rows, " k ", s.k, " n ", s.n);
    const Matrix<S> X = random_matrix<S>(s.rows, s.k, rng), W = random_matrix<S>(s.k, s.n, rng);
    const Matrix<S> D = random_matrix<S>(s.rows, s.n, rng), G0 = random_matrix<S>(s.k, s.n, rng);
    const Eigen::MatrixXd Xd = X.template cast<double>(), Wd = W.template cast<double>(),
                          Dd = D.template cast<double>();

    detail::WeightPanel<S> panel;
    panel.set(W);
    Matrix<S> out(s.rows, s.n);
    detail::panel_product<S>(X.data(), s.k, s.rows, panel, out.data(), s.n, false);
    expect_close(out, Xd * Wd, Xd.cwiseAbs() * Wd.cwiseAbs(), "panel_product " + what);

    detail::WeightPanel<S> transposed;  // out = D W^T (the input gradient of a projection)
    transposed.set_transposed(W);
    Matrix<S> dx(s.rows, s.k);
    detail::panel_product<S>(D.data(), s.n, s.rows, transposed, dx.data(), s.k, false);
    expect_close(dx, Dd * Wd.transpose(), Dd.cwiseAbs() * Wd.cwiseAbs().transpose(), "panel_product W^T " + what);

    Matrix<S> G = G0;
    detail::add_weight_gradient<S>(X.data(), s.k, s.rows, s.k, D.data(), s.n, s.n, G.data(), s.n);
    expect_close(G, G0.template cast<double>() + Xd.transpose() * Dd,
                 G0.template cast<double>().cwiseAbs() + Xd.cwiseAbs().transpose() * Dd.cwiseAbs(),
                 "add_weight_gradient " + what);

    // address independence: the same rows at offset 3 of a larger X with a longer row stride, written into a
    // larger output with another stride, give the same bits
    const Index ldx = s.k + 5, ldo = s.n + 3;
    std::vector<S> Xbig(size_t((s.rows + 3) * ldx), S(0.5)), Obig(size_t((s.rows + 3) * ldo), S(0));
    for (Index i = 0; i < s.rows; ++i)
      for (Index p = 0; p < s.k; ++p) Xbig[size_t((i + 3) * ldx + p)] = X(i, p);
    detail::panel_product<S>(Xbig.data() + 3 * ldx, ldx, s.rows, panel, Obig.data() + 3 * ldo, ldo, false);
    for (Index i = 0; i < s.rows; ++i)
      for (Index j = 0; j < s.n; ++j)
        ASSERT_EQ(Obig[size_t((i + 3) * ldo + j)], out(i, j)) << "panel_product bits at another address, " << what;
  }
}

template <class S>
void check_head_products() {
  Rng rng(11);
  for (Index dh : {1, 4, 8, 15, 16, 17, 32, 48, 64, 70})
    for (Index rows : {1, 5, 6, 7, 24, 25, 40})
      for (Index n : {1, 7, 16, 33, 100}) {
        const std::string what = detail::cat("dh ", dh, " rows ", rows, " n ", n);
        const Matrix<S> A = random_matrix<S>(rows, dh, rng), K = random_matrix<S>(n, dh, rng);
        const Matrix<S> Wt = random_matrix<S>(rows, n, rng), acc0 = random_matrix<S>(n, dh, rng);
        const Eigen::MatrixXd Ad = A.template cast<double>(), Kd = K.template cast<double>();
        const Eigen::MatrixXd Wd = Wt.template cast<double>();

        // scores: out = 0.5 A K^T through the transposed panel of K
        Vector<S> transposed;
        Index ldt = 0;
        head::pack_transposed<S>(K, n, transposed, ldt);
        Matrix<S> scores(rows, n);
        head::scores<S>(A.data(), dh, transposed.data(), ldt, dh, scores.data(), n, rows, n, S(0.5));
        expect_close(scores, 0.5 * Ad * Kd.transpose(), 0.5 * Ad.cwiseAbs() * Kd.cwiseAbs().transpose(),
                     "scores " + what);

        // rows_times_panel: out = W K, K through a rows panel (in place or a padded copy)
        Vector<S> buffer;
        const head::Panel<S> Kp = head::rows_panel<S>(K, n, buffer);
        Matrix<S> prod(rows, dh);
        head::rows_times_panel<S>(Wt.data(), n, Kp, prod.data(), dh, dh, rows, n);
        expect_close(prod, Wd * Kd, Wd.cwiseAbs() * Kd.cwiseAbs(), "rows_times_panel " + what);

        // add_transposed_times_panel: acc += W^T A, rows s < fresh continue acc0, the others start from zero
        const Index width = head::padded<S>(dh), fresh = n / 2;
        Vector<S> buffer_a;
        const head::Panel<S> Ap = head::rows_panel<S>(A, rows, buffer_a);
        std::vector<S> acc(size_t(n * width), S(0));
        for (Index s = 0; s < n; ++s)
          for (Index d = 0; d < dh; ++d) acc[size_t(s * width + d)] = s < fresh ? acc0(s, d) : S(1e6);  // overwritten
        head::add_transposed_times_panel<S>(Wt.data(), n, Ap, dh, acc.data(), width, rows, n, fresh);
        Matrix<S> got(n, dh);
        Eigen::MatrixXd want = Wd.transpose() * Ad, scale = Wd.cwiseAbs().transpose() * Ad.cwiseAbs();
        for (Index s = 0; s < n; ++s)
          for (Index d = 0; d < dh; ++d) {
            got(s, d) = acc[size_t(s * width + d)];
            if (s < fresh) {
              want(s, d) += double(acc0(s, d));
              scale(s, d) += std::abs(double(acc0(s, d)));
            }
          }
        expect_close(got, want, scale, "add_transposed_times_panel " + what);
      }
}

}  // namespace

TEST(KernelProducts, PanelProductAndWeightGradientFloat) { check_panel_product_and_gradient<float>(); }
TEST(KernelProducts, PanelProductAndWeightGradientDouble) { check_panel_product_and_gradient<double>(); }
TEST(KernelProducts, HeadProductsFloat) { check_head_products<float>(); }
TEST(KernelProducts, HeadProductsDouble) { check_head_products<double>(); }
