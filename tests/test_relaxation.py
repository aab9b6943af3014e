import pytest
import torch

from entrgi.sampling.guidance import first_eos_keep, relaxed_embeddings

V, H = 11, 5


def setup():
    torch.manual_seed(0)
    phi = torch.randn(2, 3, V, requires_grad=True)
    table = torch.randn(V, H)
    hard_tokens = torch.randint(0, V, (2, 3))
    return phi, table, hard_tokens


def soft_embeddings(phi, table, tau):
    return torch.softmax(phi / tau, -1) @ table


@pytest.mark.parametrize("w", [0.0, 0.25, 1.0])
def test_forward_value_mixes_soft_and_hard(w):
    phi, table, hard_tokens = setup()
    weight = torch.full((2, 3), w)
    out = relaxed_embeddings(phi, table, 0.7, weight, hard_tokens)
    expected = (1 - w) * soft_embeddings(phi, table, 0.7) + w * table[hard_tokens]
    torch.testing.assert_close(out, expected)


def test_per_position_weights_apply_per_position():
    phi, table, hard_tokens = setup()
    weight = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.2]])
    out = relaxed_embeddings(phi, table, 1.0, weight, hard_tokens)
    soft, hard = soft_embeddings(phi, table, 1.0), table[hard_tokens]
    torch.testing.assert_close(out[0, 0], soft[0, 0])
    torch.testing.assert_close(out[0, 1], hard[0, 1])
    torch.testing.assert_close(out[1, 2], 0.8 * soft[1, 2] + 0.2 * hard[1, 2])


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0])
def test_gradient_is_the_soft_paths_for_every_weight(w):
    phi, table, hard_tokens = setup()
    probe = torch.randn(2, 3, H)
    (relaxed_embeddings(phi, table, 0.7, torch.full((2, 3), w), hard_tokens) * probe).sum().backward()
    grad = phi.grad.clone()
    phi.grad = None
    (soft_embeddings(phi, table, 0.7) * probe).sum().backward()
    torch.testing.assert_close(grad, phi.grad)
    assert grad.abs().sum() > 0


def test_first_eos_keep_hides_the_eos_and_what_follows():
    tokens = torch.tensor([[5, 6, 2, 7, 2], [5, 6, 7, 8, 9], [2, 5, 5, 5, 5]])
    keep = first_eos_keep(tokens, torch.tensor([2]))
    assert keep.tolist() == [[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]
