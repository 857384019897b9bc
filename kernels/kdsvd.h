// Launcher interface of KDSVD (internal: host/kdsvd.cpp validates, then calls it). Host-compilable: the
// geometry and workspace layout are shared by the launcher and the workspace size query.
#pragma once

#include "common/feature_map.h"
#include "common/gemm.h"
#include "common/grid_sum.h"
#include "common/shared_memory.h"

namespace kdf::kernels {

constexpr int kKDSVDBlock = 256;
constexpr int kKDSVDMaxLayers = KDF_KDSVD_MAX_LAYERS;
constexpr int kKDSVDMaxK = KDF_KDSVD_MAX_K;
constexpr int kKDSVDMaxRank = KDF_KDSVD_MAX_RANK;
constexpr int kKDSVDMaxVectors = kKDSVDMaxK + 3;  // student candidates per teacher vector set
constexpr int kKDSVDTile = 32;                    // pixels per block of the gradient kernel

// Byte offsets of the Jacobi kernel's dynamic shared memory for Grams up to order r, bases up to order rv:
// the packed upper triangle of G (doubles), the basis V^T (doubles), the rotations (cos, sin: doubles), the
// rotated index pairs and the ranks (ints).
struct JacobiSmem {
    int64_t gram, basis, rotations, indices, bytes;
    int64_t pairs;  // entries of each rotation array

    __host__ __device__ static JacobiSmem of(int64_t r, int64_t rv)
    {
        JacobiSmem s{};
        s.pairs = r / 2 + 1;
        s.gram = 0;
        s.basis = s.gram + 8 * (r * (r + 1) / 2);
        s.rotations = s.basis + 8 * rv * rv;
        s.indices = s.rotations + 8 * 2 * s.pairs;
        s.bytes = s.indices + 4 * (2 * s.pairs + r);
        return s;
    }
};

// One network's map of one layer: the Gram the kernel decomposes is F F^T (n = C) when C <= P, else F^T F
// (n = P, "wide"); `vectors` right singular vectors are used.
struct KDSVDSide {
    int64_t p;        // h * w
    int n;            // min(C, P): order of the Gram
    bool wide;        // P < C
    int vectors;      // teacher: k; student: min(k + 3, n)
    int64_t gram;     // float offset of this side's Grams (N n^2) in the Gram region
    int64_t values;   // float offset of its eigenvalues (N n) in the eigenvalue region
    bool basis_in_smem;  // the Jacobi kernel's basis in shared memory, else in the workspace:
    int64_t basis;       // double offset of its bases (N n^2) in the basis region
};

// Float offsets of the per-sample, per-layer slots in the vector region: the live list of the gradient
// ([count, i_0, i_1, ...], k + 4 floats), a_s, a_t, dL/da_s (C x k each, vector j at j C), the student vectors and
// their y (C x (k + 3) each).
struct KDSVDVecSlots {
    int64_t as, at, da, v, y, floats;

    __host__ __device__ static KDSVDVecSlots of(int64_t c, int k)
    {
        KDSVDVecSlots o{};
        o.as = k + 4;
        o.at = o.as + c * k;
        o.da = o.at + c * k;
        o.v = o.da + c * k;
        o.y = o.v + c * (k + 3);
        o.floats = o.y + c * (k + 3);
        return o;
    }
};

struct KDSVDLayer {
    int64_t c;
    KDSVDSide s, t;
    int64_t vec;      // float offset of the layer's per-sample vectors (N * vec_floats) in the vector region
};

struct KDSVDGeometry {
    int layers;
    int k;
    int64_t n;              // samples
    KDSVDLayer layer[kKDSVDMaxLayers];
    int64_t gram_floats;    // all Grams / eigenvector matrices
    int64_t value_floats;   // all eigenvalues
    int64_t vec_floats;     // all per-sample vectors (KDSVDVecSlots)
    int64_t basis_doubles;  // the bases kept in the workspace
    int max_rank;           // the largest Gram order (the Jacobi kernel's shared memory)
    int max_smem_basis;     // the largest order whose basis is in shared memory
    int64_t smem_limit;     // the Jacobi kernel's dynamic shared memory stays within this
    bool fits;              // grids and cuBLAS ints

    static KDSVDSide side(const Map4d& m, int vectors_wanted)
    {
        KDSVDSide s{};
        s.p = m.hw();
        s.wide = s.p < m.c;
        const int64_t n = s.wide ? s.p : m.c;
        s.n = n > kKDSVDMaxRank ? kKDSVDMaxRank + 1 : static_cast<int>(n);  // > max: refused by the host
        s.vectors = vectors_wanted < s.n ? vectors_wanted : s.n;
        return s;
    }

    // smem_limit: the bytes of dynamic shared memory the Jacobi kernel may use (bases that do not fit go to the
    // workspace). The workspace is sized with kPortableDynamicSmem, what every device allows, so that its size
    // follows from the shapes alone; a call uses its device's limit, which keeps more bases on chip and fewer in
    // the workspace.
    static KDSVDGeometry of(int layers, const Map4d* s, const Map4d* t, int k, int64_t smem_limit)
    {
        KDSVDGeometry g{};
        g.smem_limit = smem_limit;
        g.layers = layers;
        g.k = k;
        g.n = s[0].n;
        constexpr int64_t kIntMax = 2147483647;
        constexpr int64_t kMaxVectorFloats = int64_t(1) << 36;  // n * c of a layer: the workspace sums stay in int64
        g.fits = 2 * layers * g.n <= kIntMax;
        int64_t tiles = 0;  // blocks of the gradient kernel when every layer has a gradient
        for (int l = 0; l < layers && g.fits; ++l) {
            tiles += g.n * ((s[l].hw() + kKDSVDTile - 1) / kKDSVDTile);
            g.fits = s[l].sc <= kIntMax && t[l].sc <= kIntMax && s[l].hw() <= kIntMax && t[l].hw() <= kIntMax &&
                     s[l].c <= kIntMax && s[l].c <= kMaxVectorFloats / g.n && tiles <= kIntMax;
            if (!g.fits) return g;  // (the sizes below are only computed for bounded shapes)
            KDSVDLayer& L = g.layer[l];
            L.c = s[l].c;
            L.s = side(s[l], k + 3);
            L.t = side(t[l], k);
            for (KDSVDSide* x : {&L.s, &L.t}) {
                x->gram = g.gram_floats;
                x->values = g.value_floats;
                g.gram_floats += g.n * x->n * x->n;
                g.value_floats += g.n * x->n;
                if (x->n > g.max_rank) g.max_rank = x->n;
            }
            L.vec = g.vec_floats;
            g.vec_floats += g.n * KDSVDVecSlots::of(L.c, k).floats;
        }
        if (!g.fits) return g;
        // Bases: in shared memory where they fit beside the largest Gram, else in the workspace.
        for (int l = 0; l < layers; ++l)
            for (KDSVDSide* x : {&g.layer[l].s, &g.layer[l].t}) {
                x->basis_in_smem = JacobiSmem::of(g.max_rank, x->n).bytes <= smem_limit;
                if (x->basis_in_smem) {
                    if (x->n > g.max_smem_basis) g.max_smem_basis = x->n;
                } else {
                    x->basis = g.basis_doubles;
                    g.basis_doubles += g.n * x->n * x->n;
                }
            }
        return g;
    }

    __host__ __device__ JacobiSmem jacobi_layout() const { return JacobiSmem::of(max_rank, max_smem_basis); }
};

// Workspace: the Jacobi bases that do not fit in shared memory, Grams (overwritten by their eigenvectors),
// eigenvalues, the per-sample vectors, the per-pair loss partials with their ticket, the cuBLAS slice.
struct KDSVDWorkspace {
    double* basis;
    float* gram;
    float* values;
    float* vec;
    GridSum sum;       // partials: (L - 1) x N
    void* cublas;

    static int64_t sizes(const KDSVDGeometry& g, int64_t out[6])
    {
        out[0] = round_up(g.basis_doubles * 8, 256);
        out[1] = round_up(g.gram_floats * 4, 256);
        out[2] = round_up(g.value_floats * 4, 256);
        out[3] = round_up(g.vec_floats * 4, 256);
        out[4] = GridSum::bytes((g.layers - 1) * g.n);
        out[5] = static_cast<int64_t>(kCublasWorkspaceBytes);
        return out[0] + out[1] + out[2] + out[3] + out[4] + out[5];
    }
    static int64_t bytes(const KDSVDGeometry& g)
    {
        int64_t s[6];
        return sizes(g, s);
    }
    static KDSVDWorkspace carve(void* workspace, const KDSVDGeometry& g)
    {
        int64_t s[6];
        sizes(g, s);
        auto* b = static_cast<unsigned char*>(workspace);
        KDSVDWorkspace w{};
        w.basis = reinterpret_cast<double*>(b), b += s[0];
        w.gram = reinterpret_cast<float*>(b), b += s[1];
        w.values = reinterpret_cast<float*>(b), b += s[2];
        w.vec = reinterpret_cast<float*>(b), b += s[3];
        w.sum = GridSum::carve(b, (g.layers - 1) * g.n), b += s[4];
        w.cublas = b;
        return w;
    }
};

struct KDSVDArgs {
    KDSVDGeometry geo;
    Map4d ms[kKDSVDMaxLayers], mt[kKDSVDMaxLayers];  // layouts of the student (and its gradient) and teacher maps
    const float* f_s[kKDSVDMaxLayers];
    const float* f_t[kKDSVDMaxLayers];
    float* grad_s[kKDSVDMaxLayers];                  // entries nullable
    float* loss;                                     // nullable: L - 1 floats
    const float* grad_loss;                          // nullable: L - 1 floats (= 1)
    float weight;
    float gap_rtol;
    float grad_scale;
    bool accumulate;
    bool any_grad;
    KDSVDWorkspace ws;
    cublasHandle_t cublas;
    bool allow_tf32;
};

// GEMMs: one Gram per layer and network (2 L). Kernels: the batched Jacobi eigensolver, the per-sample kernel
// (vectors, alignment, RBF, loss, and with a gradient the derivative of each needed vector), and with a
// gradient the kernel that writes dL/dF.
LaunchResult kdsvd_launch(const KDSVDArgs& args, cudaStream_t stream);

}  // namespace kdf::kernels
