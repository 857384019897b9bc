import pytest
import torch

from kdfuse_ref.sp import Similarity, sp_gram, sp_loss


def seed_similarity_loss(f_s, f_t):
    """The seed's Similarity.similarity_loss verbatim."""
    bsz = f_s.shape[0]
    f_s = f_s.view(bsz, -1)
    f_t = f_t.view(bsz, -1)
    G_s = torch.mm(f_s, torch.t(f_s))
    # G_s = G_s / G_s.norm(2)
    G_s = torch.nn.functional.normalize(G_s)
    G_t = torch.mm(f_t, torch.t(f_t))
    # G_t = G_t / G_t.norm(2)
    G_t = torch.nn.functional.normalize(G_t)
    G_diff = G_t - G_s
    loss = (G_diff * G_diff).view(-1, 1).sum(0) / (bsz * bsz)
    return loss


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float64)


@pytest.mark.parametrize("s_shape,t_shape", [
    ((1, 5), (1, 7)), ((2, 3), (2, 3)), ((3, 4, 3, 3), (3, 9)), ((17, 5, 2, 3), (17, 11, 3, 3)),
])
def test_matches_seed_code(s_shape, t_shape):
    f_s, f_t = rand(*s_shape), rand(*t_shape)
    seed = seed_similarity_loss(f_s, f_t)
    assert seed.shape == (1,)
    out = sp_loss(f_s, f_t)
    assert out.shape == ()
    assert torch.allclose(out, seed[0], rtol=1e-12, atol=1e-14)


def test_module_matches_function_and_seed_shape():
    g_s = [rand(4, 3, 4, 4), rand(4, 8)]
    g_t = [rand(4, 6, 2, 2), rand(4, 5)]
    losses = Similarity()(g_s, g_t)
    assert len(losses) == 2
    for l, f_s, f_t in zip(losses, g_s, g_t):
        assert l.shape == (1,)
        assert torch.equal(l[0], sp_loss(f_s, f_t))
        assert torch.allclose(l, seed_similarity_loss(f_s, f_t), rtol=1e-12, atol=1e-14)


def test_gradcheck():
    f_s = rand(5, 3, 2, 1).requires_grad_()
    f_t = rand(5, 7)
    assert torch.autograd.gradcheck(lambda a: sp_loss(a, f_t), (f_s,))
    f_s1 = rand(1, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: sp_loss(a, rand(1, 2)), (f_s1,))


def test_normalises_rows_of_the_gram_matrix_not_frobenius():
    # f = [[1, 0], [1, 1]]: G = [[1, 1], [1, 2]], rows normalised: [1, 1]/sqrt2 and [1, 2]/sqrt5.
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    expected = torch.tensor([[1 / 2 ** 0.5, 1 / 2 ** 0.5], [1 / 5 ** 0.5, 2 / 5 ** 0.5]], dtype=torch.float64)
    assert torch.allclose(sp_gram(f), expected, atol=1e-15)
    # Against the zero-feature teacher (G_t = 0): loss = sum of squares of G_s / N^2 = (1 + 1) / 4.
    assert sp_loss(f, torch.zeros(2, 3, dtype=torch.float64)).item() == pytest.approx(0.5, abs=1e-15)


def test_zero_rows_give_no_nan():
    f_s = torch.zeros(3, 4, dtype=torch.float64)
    f_t = rand(3, 4)
    out = sp_loss(f_s, f_t)
    assert torch.isfinite(out)
    # Each teacher Gram row has unit norm, so the loss is N / N^2.
    assert out.item() == pytest.approx(1 / 3, abs=1e-14)


def test_n1_is_zero():
    # N = 1: both normalised 1 x 1 Gram matrices are [[1]] (for nonzero features).
    assert sp_loss(rand(1, 4), rand(1, 9)).item() == 0.0
