// Supermodel search (see search.hpp and `search_kernel` in _reference.py).
#include "cascade_routing/search.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>

#include "parallel.hpp"

// CASCADE_ROUTING_NO_SIMD builds the portable scalar code only (used to test it on x86).
#if !defined(CASCADE_ROUTING_NO_SIMD) && \
    (defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2))
#include <emmintrin.h>
#define CASCADE_ROUTING_SSE2 1
#else
#define CASCADE_ROUTING_SSE2 0
#endif

// On x86 with GCC or Clang, the hot kernel also has an AVX version chosen at run time (the
// shipped build targets the baseline ISA; no -march). Same additions per lane: same bits.
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && \
    !defined(CASCADE_ROUTING_NO_AVX) && !defined(CASCADE_ROUTING_NO_SIMD)
#include <immintrin.h>
#define CASCADE_ROUTING_AVX 1
#else
#define CASCADE_ROUTING_AVX 0
#endif

namespace cascade_routing {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Exact powers of ten (the reference computes 10.0 ** digits, exact for these).
constexpr double kPow10[kMaxDigits + 1] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                           1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};

inline int lowest_bit(std::uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(x);
#else
    int i = 0;
    while (!(x & 1u)) {
        x >>= 1;
        ++i;
    }
    return i;
#endif
}

inline std::uint64_t low_bits(int n) {  // bits 0..n-1, n in 0..64
    return n >= 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << n) - 1);
}

// np.maximum for non-NaN values (the parent's value wins a tie, as in NumPy's scalar loop).
inline double max2(double parent, double child) { return parent < child ? child : parent; }

// NumPy's pairwise_sum for 8 <= n <= 128: eight running sums, combined as a tree, then the rest.
inline double block_sum(const double* a, std::size_t n) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    const std::size_t end = n - n % 8;
    std::size_t i = 8;
    for (; i < end; i += 8)
        for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
}

// out = max(parent, col) elementwise (stored only if Store); returns numpy_sum(out).
// The common sizes (8..128 samples) are fused into one pass that keeps NumPy's eight running
// sums in four SSE2 registers: the same additions in the same order, two lanes at a time.
template <bool Store>
inline double max_into_and_sum(const double* parent, const double* col, double* out,
                               std::size_t n) {
    if (n >= 8 && n <= 128) {
        const std::size_t end = n - n % 8;
#if CASCADE_ROUTING_SSE2
        // _mm_max_pd(c, p) = c > p ? c : p, i.e. max2(p, c).
        __m128d r0 = _mm_max_pd(_mm_loadu_pd(col + 0), _mm_loadu_pd(parent + 0));
        __m128d r1 = _mm_max_pd(_mm_loadu_pd(col + 2), _mm_loadu_pd(parent + 2));
        __m128d r2 = _mm_max_pd(_mm_loadu_pd(col + 4), _mm_loadu_pd(parent + 4));
        __m128d r3 = _mm_max_pd(_mm_loadu_pd(col + 6), _mm_loadu_pd(parent + 6));
        if (Store) {
            _mm_storeu_pd(out + 0, r0);
            _mm_storeu_pd(out + 2, r1);
            _mm_storeu_pd(out + 4, r2);
            _mm_storeu_pd(out + 6, r3);
        }
        std::size_t i = 8;
        for (; i < end; i += 8) {
            const __m128d v0 = _mm_max_pd(_mm_loadu_pd(col + i + 0), _mm_loadu_pd(parent + i + 0));
            const __m128d v1 = _mm_max_pd(_mm_loadu_pd(col + i + 2), _mm_loadu_pd(parent + i + 2));
            const __m128d v2 = _mm_max_pd(_mm_loadu_pd(col + i + 4), _mm_loadu_pd(parent + i + 4));
            const __m128d v3 = _mm_max_pd(_mm_loadu_pd(col + i + 6), _mm_loadu_pd(parent + i + 6));
            if (Store) {
                _mm_storeu_pd(out + i + 0, v0);
                _mm_storeu_pd(out + i + 2, v1);
                _mm_storeu_pd(out + i + 4, v2);
                _mm_storeu_pd(out + i + 6, v3);
            }
            r0 = _mm_add_pd(r0, v0);
            r1 = _mm_add_pd(r1, v1);
            r2 = _mm_add_pd(r2, v2);
            r3 = _mm_add_pd(r3, v3);
        }
        double r[8];
        _mm_storeu_pd(r + 0, r0);
        _mm_storeu_pd(r + 2, r1);
        _mm_storeu_pd(r + 4, r2);
        _mm_storeu_pd(r + 6, r3);
#else
        double r[8];
        for (int j = 0; j < 8; ++j) {
            const double v = max2(parent[j], col[j]);
            if (Store) out[j] = v;
            r[j] = v;
        }
        std::size_t i = 8;
        for (; i < end; i += 8) {
            for (int j = 0; j < 8; ++j) {
                const double v = max2(parent[i + j], col[i + j]);
                if (Store) out[i + j] = v;
                r[j] += v;
            }
        }
#endif
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) {
            const double v = max2(parent[i], col[i]);
            if (Store) out[i] = v;
            res += v;
        }
        return res;
    }
    // Other sizes (any, with the same pairwise order): materialise the row, then sum it.
    for (std::size_t i = 0; i < n; ++i) out[i] = max2(parent[i], col[i]);
    return numpy_sum(out, n);
}

#if CASCADE_ROUTING_AVX
// max_into_and_sum for 8 <= n <= 128 with 256-bit registers: lanes (r0..r3) and (r4..r7)
// hold NumPy's eight running sums, updated in the same order as the SSE2 / scalar code.
template <bool Store>
__attribute__((target("avx"))) __attribute__((noinline)) double max_sum_block_avx(
    const double* parent, const double* col, double* out, std::size_t n) {
    const std::size_t end = n - n % 8;
    __m256d lo = _mm256_max_pd(_mm256_loadu_pd(col + 0), _mm256_loadu_pd(parent + 0));
    __m256d hi = _mm256_max_pd(_mm256_loadu_pd(col + 4), _mm256_loadu_pd(parent + 4));
    if (Store) {
        _mm256_storeu_pd(out + 0, lo);
        _mm256_storeu_pd(out + 4, hi);
    }
    std::size_t i = 8;
    for (; i < end; i += 8) {
        const __m256d v0 = _mm256_max_pd(_mm256_loadu_pd(col + i), _mm256_loadu_pd(parent + i));
        const __m256d v1 =
            _mm256_max_pd(_mm256_loadu_pd(col + i + 4), _mm256_loadu_pd(parent + i + 4));
        if (Store) {
            _mm256_storeu_pd(out + i, v0);
            _mm256_storeu_pd(out + i + 4, v1);
        }
        lo = _mm256_add_pd(lo, v0);
        hi = _mm256_add_pd(hi, v1);
    }
    double r[8];
    _mm256_storeu_pd(r + 0, lo);
    _mm256_storeu_pd(r + 4, hi);
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) {
        const double v = max2(parent[i], col[i]);
        if (Store) out[i] = v;
        res += v;
    }
    return res;
}

inline bool cpu_has_avx() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx");
}
// Largest |value| and non-finiteness of a column, as column_stats (max is exact and the OR of
// the bits of v - v is all zero iff every value is finite, whatever the order of the lanes).
// For 8 <= n <= 128 it also returns numpy_sum(col) in `sum` (NumPy's eight running sums in two
// registers, combined as block_sum does: the same bits); otherwise `sum` is left untouched.
__attribute__((target("avx"))) __attribute__((noinline)) void column_stats_avx(
    const double* col, std::size_t n, double& maxabs, double& check, double& sum) {
    const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7fffffffffffffffLL));
    __m256d m0 = _mm256_setzero_pd(), m1 = _mm256_setzero_pd();
    __m256d f0 = _mm256_setzero_pd(), f1 = _mm256_setzero_pd();
    std::size_t i = 0;
    if (n >= 8 && n <= 128) {
        const std::size_t end = n - n % 8;
        __m256d lo = _mm256_loadu_pd(col);
        __m256d hi = _mm256_loadu_pd(col + 4);
        m0 = _mm256_and_pd(lo, abs_mask);
        m1 = _mm256_and_pd(hi, abs_mask);
        f0 = _mm256_sub_pd(lo, lo);
        f1 = _mm256_sub_pd(hi, hi);
        for (i = 8; i < end; i += 8) {
            const __m256d v0 = _mm256_loadu_pd(col + i);
            const __m256d v1 = _mm256_loadu_pd(col + i + 4);
            lo = _mm256_add_pd(lo, v0);
            hi = _mm256_add_pd(hi, v1);
            m0 = _mm256_max_pd(_mm256_and_pd(v0, abs_mask), m0);
            m1 = _mm256_max_pd(_mm256_and_pd(v1, abs_mask), m1);
            f0 = _mm256_or_pd(f0, _mm256_sub_pd(v0, v0));
            f1 = _mm256_or_pd(f1, _mm256_sub_pd(v1, v1));
        }
        double r[8];
        _mm256_storeu_pd(r + 0, lo);
        _mm256_storeu_pd(r + 4, hi);
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (std::size_t t = i; t < n; ++t) res += col[t];
        sum = res;
    }
    for (; i + 8 <= n; i += 8) {
        const __m256d v0 = _mm256_loadu_pd(col + i);
        const __m256d v1 = _mm256_loadu_pd(col + i + 4);
        m0 = _mm256_max_pd(_mm256_and_pd(v0, abs_mask), m0);
        m1 = _mm256_max_pd(_mm256_and_pd(v1, abs_mask), m1);
        f0 = _mm256_or_pd(f0, _mm256_sub_pd(v0, v0));
        f1 = _mm256_or_pd(f1, _mm256_sub_pd(v1, v1));
    }
    double mm[8], ff[8];
    _mm256_storeu_pd(mm, m0);
    _mm256_storeu_pd(mm + 4, m1);
    _mm256_storeu_pd(ff, f0);
    _mm256_storeu_pd(ff + 4, f1);
    double m = 0.0;
    double f = 0.0;
    for (int l = 0; l < 8; ++l) {
        m = mm[l] > m ? mm[l] : m;
        f += ff[l];
    }
    for (; i < n; ++i) {
        const double v = col[i];
        const double a = std::fabs(v);
        m = a > m ? a : m;
        f += v - v;
    }
    maxabs = m;
    check = f;
}

// col[s] = quality + u[s * step] * sd (a product, then a sum: no fused multiply-add), four
// samples per register; strided normals are gathered four at a time with scalar loads.
__attribute__((target("avx"))) __attribute__((noinline)) void fill_independent_avx(
    const double* u, std::size_t step, double quality, double sd, double* col, std::size_t n) {
    const __m256d q = _mm256_set1_pd(quality);
    const __m256d d = _mm256_set1_pd(sd);
    std::size_t s = 0;
    if (step == 1) {
        for (; s + 4 <= n; s += 4)
            _mm256_storeu_pd(col + s, _mm256_add_pd(q, _mm256_mul_pd(_mm256_loadu_pd(u + s), d)));
    } else {
        for (; s + 4 <= n; s += 4) {
            const __m256d v =
                _mm256_set_pd(u[(s + 3) * step], u[(s + 2) * step], u[(s + 1) * step], u[s * step]);
            _mm256_storeu_pd(col + s, _mm256_add_pd(q, _mm256_mul_pd(v, d)));
        }
    }
    for (; s < n; ++s) col[s] = quality + u[s * step] * sd;
}

inline bool avx_available() {
    static const bool has = cpu_has_avx();
    return has;
}
#else
inline bool cpu_has_avx() { return false; }
inline bool avx_available() { return false; }
#endif

// Round half to even, as np.rint / std::nearbyint in the default rounding mode, without a
// libm call: adding and subtracting 2^52 leaves the nearest integer (ties to even).
inline double rint_even(double x) {
    constexpr double kTwo52 = 4503599627370496.0;
    const double a = std::fabs(x);
    if (!(a < kTwo52)) return x;  // already an integer (or not finite)
    const double r = (a + kTwo52) - kTwo52;
    return std::copysign(r, x);
}

inline double round_key(double value, double scale) {
    return scale > 0.0 ? rint_even(value * scale) / scale : value;
}

// The incumbent of a search and the reference's comparison rule.
struct Best {
    double key = -kInf;
    double util = -kInf;
    double q = -kInf;
    double c = 0.0;
    std::uint64_t mask = 0;
    bool prefix = false;
    bool found = false;

    // Returns true if (qc, cc) becomes the incumbent.
    inline bool offer(double qc, double cc, double lam, double scale, bool prefer_expensive) {
        const double util_c = qc - lam * cc;
        const double key_c = round_key(util_c, scale);
        bool better = !found || key_c > key;
        if (found && key_c == key) better = prefer_expensive ? cc > c : cc < c;
        if (better) {
            found = true;
            key = key_c;
            util = util_c;
            q = qc;
            c = cc;
        }
        return better;
    }
};

// Clip in place: v = min(max(v, lower), upper) with std::max / std::min, i.e. `v < lower ?
// lower : v`, then `upper < v ? upper : v`: the comparisons of the reference's clip_values,
// so every backend keeps the same value (signed zeros included; a NaN stays NaN).
inline void clip_values(double* values, std::size_t n, double lower, double upper) {
    for (std::size_t i = 0; i < n; ++i) values[i] = std::min(std::max(values[i], lower), upper);
}

// Largest |value| over a column, and a value that is NaN iff the column holds a non-finite
// value (v - v is +0.0 for finite v and NaN otherwise). Max is exact, so the order of the
// lanes cannot change the result.
inline void column_stats(const double* col, std::size_t n, double& maxabs, double& check) {
    std::size_t i = 0;
    double m = 0.0;
    double f = 0.0;
#if CASCADE_ROUTING_SSE2
    // OR-ing the bits of v - v: all zero while every value is finite, a NaN pattern otherwise.
    const __m128d abs_mask = _mm_castsi128_pd(_mm_set1_epi64x(0x7fffffffffffffffLL));
    __m128d m0 = _mm_setzero_pd(), m1 = _mm_setzero_pd();
    __m128d f0 = _mm_setzero_pd(), f1 = _mm_setzero_pd();
    for (; i + 4 <= n; i += 4) {
        const __m128d v0 = _mm_loadu_pd(col + i);
        const __m128d v1 = _mm_loadu_pd(col + i + 2);
        m0 = _mm_max_pd(_mm_and_pd(v0, abs_mask), m0);
        m1 = _mm_max_pd(_mm_and_pd(v1, abs_mask), m1);
        f0 = _mm_or_pd(f0, _mm_sub_pd(v0, v0));
        f1 = _mm_or_pd(f1, _mm_sub_pd(v1, v1));
    }
    double mm[4], ff[4];
    _mm_storeu_pd(mm, m0);
    _mm_storeu_pd(mm + 2, m1);
    _mm_storeu_pd(ff, f0);
    _mm_storeu_pd(ff + 2, f1);
    for (int l = 0; l < 4; ++l) {
        m = mm[l] > m ? mm[l] : m;
        f += ff[l];
    }
#endif
    for (; i < n; ++i) {
        const double v = col[i];
        const double a = std::fabs(v);
        m = a > m ? a : m;
        f += v - v;
    }
    maxabs = m;
    check = f;
}

// How Q of a child follows from its parent's state, for exact means and for samples.
struct ExactQuality {
    const double* quality;
    double* qual;  // qual[d] = Q of the node at depth d
    inline double child(int depth, int m, bool = false) const {
        double qc = qual[depth];
        if (quality[m] > qc) qc = quality[m];
        return qc;
    }
};

struct SampledQuality {
    const double* z;        // (k, ns)
    double* rowmax;         // (k + 1, ns)
    const double** rows;    // rows[d] = the row maxima of the node at depth d
    const double* col_sum;  // (k,): numpy_sum of each column
    double* scratch;        // (ns,) for sizes that must materialise a row before summing
    std::size_t ns;
    double dns;
    bool avx;         // 8 <= ns <= 128 and the CPU has AVX
    bool empty_root;  // nothing ran: the root's row maxima are all -inf
    const double* col(int m) const { return z + static_cast<std::size_t>(m) * ns; }
    //! Q of the child that adds m to the node at `depth`; its row maxima are recorded for
    //! depth + 1 unless `leaf` (the child will not be expanded). Below an empty root,
    //! max(-inf, z) = z: the child's row maxima are its column and its sum the column's
    //! (finite columns: a search with a non-finite sample stops before enumerating).
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((always_inline))
#endif
    inline double child(int depth, int m, bool leaf = false) const {
        if (depth == 0 && empty_root) {
            rows[1] = col(m);
            return col_sum[m] / dns;
        }
        const double* parent = rows[depth];
        double* out = leaf ? scratch : rowmax + static_cast<std::size_t>(depth + 1) * ns;
        if (!leaf) rows[depth + 1] = out;
        double sum;
#if CASCADE_ROUTING_AVX
        if (avx) {
            sum = leaf ? max_sum_block_avx<false>(parent, col(m), out, ns)
                       : max_sum_block_avx<true>(parent, col(m), out, ns);
            return sum / dns;
        }
#endif
        sum = leaf ? max_into_and_sum<false>(parent, col(m), out, ns)
                   : max_into_and_sum<true>(parent, col(m), out, ns);
        return sum / dns;
    }
};

struct Context {
    const double* cost;
    double lam;
    double scale;
    double tol;
    bool prefer_expensive;
    int k;
    int n_ran;
    int start;
    std::uint64_t ranmask;
    std::int64_t max_add;
    const Cancellation* cancel;  // null = not cancellable
};

// Whether a search that has scored `evaluated` candidates must stop (read every
// kCancelPollCandidates candidates, so the test costs one predictable branch).
inline bool cancelled_at(const Context& cx, std::int64_t evaluated) {
    static_assert((kCancelPollCandidates & (kCancelPollCandidates - 1)) == 0);
    return (evaluated & (kCancelPollCandidates - 1)) == 0 && cx.cancel != nullptr &&
           cx.cancel->stop();
}

// Only the prefixes m_0..m_j with j >= |ran| (the optimal cascade); no pruning.
// At most kMaxModels candidates: never worth a cancellation check.
template <class Q>
void enumerate_prefixes(const Q& quality, const Context& cx, const SearchOptions&,
                        SearchWorkspace& ws, Best& best, std::int64_t& evaluated) {
    double* qual = ws.qual_;
    double* cst = ws.cst_;
    int depth = 0;
    int m = cx.n_ran;
    while (depth < cx.max_add && m < cx.k) {
        const bool leaf = depth + 1 >= cx.max_add || m + 1 >= cx.k;
        const double qc = quality.child(depth, m, leaf);
        const double cc = cst[depth] + cx.cost[m];
        ++evaluated;
        qual[depth + 1] = qc;
        cst[depth + 1] = cc;
        if (best.offer(qc, cc, cx.lam, cx.scale, cx.prefer_expensive)) {
            best.mask = low_bits(m + 1);
            best.prefix = true;
        }
        ++depth;
        ++m;
    }
}

// Every superset of ran, once each, depth first, adding indices in increasing order.
// Returns false if the search was cancelled.
template <class Q>
bool enumerate_supersets(const Q& quality, const Context& cx, const SearchOptions& opt,
                         SearchWorkspace& ws, Best& best, std::int64_t& evaluated) {
    double* qual = ws.qual_;
    double* cst = ws.cst_;
    int* nxt = ws.nxt_;
    std::uint64_t* pmask = ws.pmask_;
    const std::uint64_t free = low_bits(cx.k) & ~cx.ranmask;
    const bool prune = opt.prune;
    const double neg_tol = -cx.tol;
    pmask[0] = 0;
    nxt[0] = opt.force_order ? cx.start : 0;
    int depth = 0;
    while (depth >= 0) {
        if (depth >= cx.max_add) {
            --depth;
            continue;
        }
        const int from = nxt[depth];
        const std::uint64_t cand = from >= 64 ? 0 : (free & (~std::uint64_t{0} << from));
        if (cand == 0) {
            --depth;
            continue;
        }
        const int m = lowest_bit(cand);
        nxt[depth] = m + 1;
        // A leaf is never expanded, so its row maxima need not be stored.
        const bool leaf = depth + 1 >= cx.max_add || m + 1 >= 64 || (free >> (m + 1)) == 0;
        const double qc = quality.child(depth, m, leaf);
        const double cc = cst[depth] + cx.cost[m];
        ++evaluated;
        if (cancelled_at(cx, evaluated)) return false;
        // Lemma 1: a negative marginal gain rules out every superset containing m.
        if (prune && (cx.n_ran + depth) > 0 && (qc - qual[depth]) - cx.lam * cx.cost[m] < neg_tol)
            continue;
        const std::uint64_t pm = pmask[depth] | (std::uint64_t{1} << m);
        if (best.offer(qc, cc, cx.lam, cx.scale, cx.prefer_expensive)) {
            best.mask = cx.ranmask | pm;
            best.prefix = false;
        }
        qual[depth + 1] = qc;
        cst[depth + 1] = cc;
        nxt[depth + 1] = m + 1;
        pmask[depth + 1] = pm;
        ++depth;
    }
    return true;
}

// Returns false if the search was cancelled.
template <class Q>
bool enumerate(const Q& quality, const Context& cx, const SearchOptions& opt, SearchWorkspace& ws,
               Best& best, std::int64_t& evaluated) {
    if (!opt.prefixes_only) return enumerate_supersets(quality, cx, opt, ws, best, evaluated);
    enumerate_prefixes(quality, cx, opt, ws, best, evaluated);
    return true;
}

}  // namespace

double rounding_scale(int digits) noexcept {
    if (digits < 0) return 0.0;
    return kPow10[std::min(digits, kMaxDigits)];
}

double numpy_sum(const double* a, std::size_t n) noexcept {
    if (n < 8) {
        double res = 0.0;
        for (std::size_t i = 0; i < n; ++i) res += a[i];
        return res;
    }
    if (n <= 128) return block_sum(a, n);
    std::size_t n2 = n / 2;
    n2 -= n2 % 8;
    return numpy_sum(a, n2) + numpy_sum(a + n2, n - n2);
}

void cholesky_psd(const double* cov, std::size_t k, double* lower) noexcept {
    std::fill(lower, lower + k * k, 0.0);
    for (std::size_t j = 0; j < k; ++j) {
        double d = cov[j * k + j];
        for (std::size_t p = 0; p < j; ++p) d -= lower[j * k + p] * lower[j * k + p];
        // Not positive, or rounding noise of an exact duplicate (relative to the model's own
        // variance): a zero column (semi-definite direction). Same test as _reference.py.
        if (d <= 1e-12 * cov[j * k + j] || d <= 1e-300) continue;
        const double ljj = std::sqrt(d);
        lower[j * k + j] = ljj;
        for (std::size_t i = j + 1; i < k; ++i) {
            double s = cov[i * k + j];
            for (std::size_t p = 0; p < j; ++p) s -= lower[i * k + p] * lower[j * k + p];
            lower[i * k + j] = s / ljj;
        }
    }
}

void SearchWorkspace::reserve(int k, std::size_t n_samples) {
    k_ = k;
    ns_ = n_samples;
    const std::size_t kk = static_cast<std::size_t>(std::max(k, 0));
    // One uninitialised block: normals (k, ns), samples (k, ns), row maxima (k + 1, ns),
    // and a scratch row (ns).
    const std::size_t size = n_samples == 0 ? 0 : n_samples * (3 * kk + 2);
    if (size > capacity_) {
        buffer_.reset(new double[size]);
        capacity_ = size;
    }
    double* p = buffer_.get();
    normals_t_ = p;
    z_ = normals_t_ + kk * n_samples;
    rowmax_ = z_ + kk * n_samples;
    scratch_ = rowmax_ + (kk + 1) * n_samples;
}

void SearchWorkspace::set_normals(const Normals& normals, int k, bool transpose) {
    const std::size_t ns = normals.n_samples;
    const std::size_t kk = static_cast<std::size_t>(k);
    if (!transpose) {  // read the columns in place (one decision: not worth a copy)
        u_ = normals.data;
        u_column_step_ = 1;
        u_sample_step_ = kk;
        return;
    }
    for (std::size_t j = 0; j < kk; ++j) {
        double* col = normals_t_ + j * ns;
        for (std::size_t s = 0; s < ns; ++s) col[s] = normals.data[s * kk + j];
    }
    u_ = normals_t_;
    u_column_step_ = ns;
    u_sample_step_ = 1;
}

// The statistics of column i after an optional clip (every column filler ends with this).
void SearchWorkspace::finish_column(int i, const SearchOptions& opt) {
    const std::size_t ns = ns_;
    double* col = z_ + static_cast<std::size_t>(i) * ns;
    if (has_quality_bounds(opt)) clip_values(col, ns, opt.quality_lower, opt.quality_upper);
#if CASCADE_ROUTING_AVX
    if (opt.use_avx && avx_available()) {
        column_stats_avx(col, ns, col_maxabs_[i], col_check_[i], col_sum_[i]);
        if (ns < 8 || ns > 128) col_sum_[i] = numpy_sum(col, ns);
        return;
    }
#endif
    column_stats(col, ns, col_maxabs_[i], col_check_[i]);
    col_sum_[i] = numpy_sum(col, ns);
}

void SearchWorkspace::fill_column(int i, double quality, double sd, const SearchOptions& opt) {
    // z = q + u * sd, as the reference (one rounding for the product, one for the sum).
    const std::size_t ns = ns_;
    const std::size_t step = u_sample_step_;
    const double* u = u_ + static_cast<std::size_t>(i) * u_column_step_;
    double* col = z_ + static_cast<std::size_t>(i) * ns;
#if CASCADE_ROUTING_AVX
    if (opt.use_avx && avx_available()) {
        fill_independent_avx(u, step, quality, sd, col, ns);
        finish_column(i, opt);
        return;
    }
#endif
    if (step == 1) {
        for (std::size_t s = 0; s < ns; ++s) col[s] = quality + u[s] * sd;
    } else {
        for (std::size_t s = 0; s < ns; ++s) col[s] = quality + u[s * step] * sd;
    }
    finish_column(i, opt);
}

void SearchWorkspace::fill_column_chol(int i, double quality, const double* chol_row,
                                       const SearchOptions& opt) {
    // z = q, then += u_j * L_ij for j = 0..i, in this order (as the reference).
    const std::size_t ns = ns_;
    const std::size_t step = u_sample_step_;
    double* col = z_ + static_cast<std::size_t>(i) * ns;
    for (std::size_t s = 0; s < ns; ++s) col[s] = quality;
    for (int j = 0; j <= i; ++j) {
        const double l = chol_row[j];
        const double* u = u_ + static_cast<std::size_t>(j) * u_column_step_;
        if (step == 1) {
            for (std::size_t s = 0; s < ns; ++s) col[s] += u[s] * l;
        } else {
            for (std::size_t s = 0; s < ns; ++s) col[s] += u[s * step] * l;
        }
    }
    finish_column(i, opt);
}

Status search_prepared(const SearchInput& in, int k, const SearchOptions& opt, SearchWorkspace& ws,
                       SearchResult& out) {
    if (k < 1 || k > kMaxModels) return Status::bad_size;
    const bool sampled = in.mode != Mode::exact;
    const std::size_t ns = ws.ns_;
    if (sampled && (ns == 0 || ws.k_ < k)) return Status::bad_size;

    Context cx;
    cx.cost = in.cost;
    cx.lam = in.lam;
    cx.scale = rounding_scale(opt.digits);
    cx.prefer_expensive = in.prefer_expensive;
    cx.k = k;
    cx.n_ran = 0;
    cx.start = 0;
    cx.ranmask = 0;
    cx.cancel = opt.cancel;
    double cost_root = 0.0;
    double total_cost = 0.0;
    for (int i = 0; i < k; ++i) {
        total_cost += in.cost[i];
        if (in.ran[i] != 0) {
            ++cx.n_ran;
            cost_root += in.cost[i];
            cx.start = i + 1;
            cx.ranmask |= std::uint64_t{1} << i;
        }
    }
    // Exact means: Q(M) is the max of the clipped means (the caller's array stays untouched).
    double clipped[kMaxModels];
    const double* means = in.quality;
    if (!sampled && has_quality_bounds(opt)) {
        std::copy(in.quality, in.quality + k, clipped);
        clip_values(clipped, static_cast<std::size_t>(k), opt.quality_lower, opt.quality_upper);
        means = clipped;
    }
    double maxabs = 0.0;
    double check = 0.0;
    if (sampled) {
        for (int i = 0; i < k; ++i) {
            if (ws.col_maxabs_[i] > maxabs) maxabs = ws.col_maxabs_[i];
            check += ws.col_check_[i];
        }
    } else {
        for (int i = 0; i < k; ++i) {
            const double a = std::fabs(means[i]);
            if (a > maxabs) maxabs = a;
            check += means[i] - means[i];
        }
    }
    double tol = kPruneSlack * (1.0 + maxabs + in.lam * total_cost);
    if (!std::isfinite(tol) || !std::isfinite(check)) return Status::non_finite;
    if (cx.scale > 0.0) tol += 1.0 / cx.scale;
    cx.tol = tol;
    // Any depth >= k acts as k, any depth <= |ran| as |ran| (clamped: no overflow).
    cx.max_add = std::clamp<std::int64_t>(opt.max_depth, 0, kMaxModels) - cx.n_ran;

    double q_root = -kInf;
    double* rowmax = sampled ? ws.rowmax_ : nullptr;
    if (sampled && cx.n_ran > 0) {
        std::fill(rowmax, rowmax + ns, -kInf);
        for (int i = 0; i < k; ++i) {
            if (in.ran[i] == 0) continue;
            const double* col = ws.z_ + static_cast<std::size_t>(i) * ns;
            for (std::size_t s = 0; s < ns; ++s) rowmax[s] = max2(rowmax[s], col[s]);
        }
        q_root = numpy_sum(rowmax, ns) / static_cast<double>(ns);
    } else if (!sampled) {
        for (int i = 0; i < k; ++i)
            if (in.ran[i] != 0 && means[i] > q_root) q_root = means[i];
    }
    ws.qual_[0] = q_root;
    ws.cst_[0] = cost_root;

    Best best;
    std::int64_t evaluated = 0;
    if (cx.n_ran > 0) {
        evaluated = 1;
        best.offer(q_root, cost_root, cx.lam, cx.scale, cx.prefer_expensive);
        best.mask = cx.ranmask;
    }
    if (sampled) {
        ws.rows_[0] = rowmax;  // not read below an empty root
        const SampledQuality quality{ws.z_,
                                     rowmax,
                                     ws.rows_,
                                     ws.col_sum_,
                                     ws.scratch_,
                                     ns,
                                     static_cast<double>(ns),
                                     ns >= 8 && ns <= 128 && opt.use_avx && avx_available(),
                                     cx.n_ran == 0};
        if (!enumerate(quality, cx, opt, ws, best, evaluated)) return Status::cancelled;
    } else {
        const ExactQuality quality{means, ws.qual_};
        if (!enumerate(quality, cx, opt, ws, best, evaluated)) return Status::cancelled;
    }

    // Next model: the earliest new member, or (free order) the cheapest, ties to the lowest.
    int next = -1;
    std::uint64_t fresh = best.mask & low_bits(k) & ~cx.ranmask;
    const bool cheapest = !opt.force_order && !opt.prefixes_only;
    while (fresh != 0) {
        const int i = lowest_bit(fresh);
        fresh &= fresh - 1;
        if (next < 0)
            next = i;
        else if (cheapest && in.cost[i] < in.cost[next])
            next = i;
        if (!cheapest) break;
    }
    out.next_model = next;
    out.mask = best.mask;
    out.mask_is_prefix = best.prefix;
    out.utility = best.util;
    out.quality = best.q;
    out.cost = best.c;
    out.evaluated = evaluated;
    return Status::ok;
}

Status search(const SearchInput& in, int k, const SearchOptions& opt, SearchWorkspace& ws,
              SearchResult& out) {
    if (k < 1 || k > kMaxModels) return Status::bad_size;
    // Samples need a workspace reserved for at least k models and given the normals.
    if (in.mode != Mode::exact && (ws.ns_ == 0 || ws.k_ < k || ws.u_ == nullptr))
        return Status::bad_size;
    switch (in.mode) {
        case Mode::exact:
            break;
        case Mode::independent:
            for (int i = 0; i < k; ++i) ws.fill_column(i, in.quality[i], in.sd[i], opt);
            break;
        case Mode::covariance:
            for (int i = 0; i < k; ++i)
                ws.fill_column_chol(i, in.quality[i], in.chol + static_cast<std::size_t>(i) * k,
                                    opt);
            break;
    }
    return search_prepared(in, k, opt, ws, out);
}

void write_mask(const SearchResult& r, const std::uint8_t* ran, int k, std::uint8_t* out) noexcept {
    for (int i = 0; i < k; ++i) {
        const bool member = (r.mask >> i) & 1u;
        if (!member)
            out[i] = 0;
        else
            out[i] = (!r.mask_is_prefix && ran[i] != 0) ? ran[i] : 1;
    }
}

int resolve_threads(int n_threads, std::size_t n_rows) noexcept {
    // hardware_concurrency() may be 0 when unknown: then one thread.
    const std::size_t cores = std::max(1u, std::thread::hardware_concurrency());
    std::size_t t = static_cast<std::size_t>(std::max(n_threads, 0));
    if (t == 0 || t > cores) t = cores;
    t = std::min(t, std::max<std::size_t>(n_rows, 1));
    return static_cast<int>(t);
}

BatchStatus search_batch(const BatchInput& in, std::size_t n, int k, const Normals& normals,
                         const SearchOptions& opt, const BatchOutput& out, int n_threads) {
    if (k < 1 || k > kMaxModels) return {Status::bad_size, 0};
    const bool sampled = in.mode != Mode::exact;
    if (sampled && normals.n_samples == 0) return {Status::bad_size, 0};
    if (n == 0) return {};
    const int threads = resolve_threads(n_threads, n);
    const std::size_t kk = static_cast<std::size_t>(k);
    detail::RowBlocks blocks(n, detail::block_size(n, threads));
    detail::FirstFailure failure;
    std::atomic<bool> cancelled{false};

    auto worker = [&](detail::RowBlocks& rows) {
        SearchWorkspace ws;  // one per thread, sized once
        ws.reserve(k, sampled ? normals.n_samples : 0);
        if (sampled) ws.set_normals(normals, k);
        SearchInput q;
        q.mode = in.mode;
        SearchResult res;
        std::size_t begin = 0, end = 0;
        while (rows.next(begin, end)) {
            for (std::size_t r = begin; r < end; ++r) {
                if (opt.cancel != nullptr && opt.cancel->stop()) {
                    cancelled.store(true, std::memory_order_relaxed);
                    return;
                }
                q.quality = in.quality + r * kk;
                q.cost = in.cost + r * kk;
                q.lam = in.lam[r];
                q.sd = in.mode == Mode::independent ? in.sd + r * kk : nullptr;
                q.chol = in.mode == Mode::covariance ? in.chol + r * kk * kk : nullptr;
                q.ran = in.ran + r * kk;
                q.prefer_expensive = in.prefer_expensive[r] != 0;
                const Status st = search(q, k, opt, ws, res);
                if (st == Status::cancelled) {
                    cancelled.store(true, std::memory_order_relaxed);
                    return;
                }
                if (st != Status::ok) {
                    failure.report(r, st);
                    res = SearchResult{};
                }
                out.next_model[r] = res.next_model;
                write_mask(res, q.ran, k, out.mask + r * kk);
                out.utility[r] = res.utility;
                out.quality[r] = res.quality;
                out.cost[r] = res.cost;
                out.evaluated[r] = res.evaluated;
            }
        }
    };
    detail::run_workers(threads, blocks, worker, opt.cancel);
    if (cancelled.load()) return {Status::cancelled, 0};
    return failure.result();
}

double search_work(int k, int n_ran, std::int64_t max_depth, bool prefixes_only,
                   std::size_t n_samples) noexcept {
    const int free = k - n_ran;
    const std::int64_t depth = std::clamp<std::int64_t>(max_depth, 0, kMaxModels);
    const std::int64_t add = std::min<std::int64_t>(depth - n_ran, free);
    double candidates = 0.0;
    if (prefixes_only) {
        candidates = static_cast<double>(std::max<std::int64_t>(add, 0));
    } else {
        double binom = 1.0;
        for (std::int64_t i = 1; i <= add; ++i) {
            binom = binom * static_cast<double>(free - i + 1) / static_cast<double>(i);
            candidates += binom;
        }
    }
    return candidates * static_cast<double>(std::max<std::size_t>(n_samples, 1));
}

}  // namespace cascade_routing
