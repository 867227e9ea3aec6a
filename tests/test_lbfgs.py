"""core.lbfgs against a transcription of the Collage authors' FullBatchLBFGS
(tests/lbfgs_reference.py) on small functions: the same iterates bit for bit, each branch of
their line search and curvature rule exercised."""
from __future__ import annotations

import torch

from lbfgs_reference import reference_run

from core.lbfgs import FullBatchLBFGS


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return ((1 - x[:-1]) ** 2).sum() + 100 * ((x[1:] - x[:-1] ** 2) ** 2).sum()


def flat_quadratic(x: torch.Tensor) -> torch.Tensor:
    """Nearly linear: the first search doubles t up to 32, and that pair fails the eps rule
    (s'y = 9.2 > 0 but under 1e-2 s'Bs = 20.5), as do all later ones."""
    return -x.sum() + 0.5 * (torch.tensor([0.005, 0.004]) * x * x).sum()


def ours(f, x0: list[float], n: int) -> tuple[FullBatchLBFGS, list, list[float], list[float], list]:
    x = torch.tensor(x0, requires_grad=True)
    opt = FullBatchLBFGS([x])
    loss = opt.evaluate(lambda: f(x))
    losses, steps, iterates, trials = [loss.item()], [], [], []
    for _ in range(n):
        done = opt.step(lambda: f(x), loss)
        loss = done.loss
        losses.append(loss.item())
        steps.append(done.step_size)
        iterates.append(x.detach().clone())
        trials.append(done)
    return opt, trials, losses, steps, iterates


def theirs(f, x0: list[float], n: int):
    x = torch.tensor(x0, requires_grad=True)
    losses, steps, iterates = reference_run(lambda: f(x), [x], n)
    return losses, steps, [it[0] for it in iterates]


def assert_same_trajectory(f, x0: list[float], n: int) -> tuple[FullBatchLBFGS, list, list[float]]:
    opt, trials, losses, steps, iterates = ours(f, x0, n)
    ref_losses, ref_steps, ref_iterates = theirs(f, x0, n)
    assert losses == ref_losses and steps == ref_steps
    assert all(torch.equal(a, b) for a, b in zip(iterates, ref_iterates))
    assert opt.iterations == n and len(losses) == n + 1  # never stops early
    return opt, trials, steps


def test_first_step_is_the_negative_gradient():
    """lr 1 along -g (torch.optim.LBFGS would take t = 1 / |g|_1 = 0.8 here)."""
    f = lambda x: 0.5 * (torch.tensor([0.5, 0.75]) * x * x).sum()
    opt, trials, _, steps, iterates = ours(f, [1.0, 1.0], 1)
    assert steps == [1.0] and trials[0].trials == 0 and trials[0].evaluations == 1
    assert torch.equal(iterates[0], torch.tensor([0.5, 0.25]))


def test_rosenbrock_6d_matches_step_by_step():
    """Backtracking by quadratic interpolation, a full history (pairs beyond 10 drop the
    oldest), 60 iterations."""
    opt, _, steps = assert_same_trajectory(rosenbrock, [-1.2, 1.0, -1.2, 1.0, 0.5, 0.3], 60)
    assert any(0 < t < 1 and t not in (0.5, 0.25) for t in steps)  # interpolated steps
    assert len(opt.s) == 10 and opt.iterations - 1 - opt.failure_skips - opt.curvature_skips > 10


def test_rosenbrock_2d_fails_and_keeps_going():
    """From (-1.2, 1) an extrapolated step (t = 4) and then line searches that give up: their
    half-width bound keeps the trial outside the bracket, so the point stays put (t = 0, no
    pair) for the remaining iterations, which are still all run."""
    opt, trials, steps = assert_same_trajectory(rosenbrock, [-1.2, 1.0], 12)
    assert 4.0 in steps and steps[-1] == 0.0 and trials[-1].failed and trials[-1].trials == 10
    assert opt.failure_skips >= 5


def test_flat_quadratic_skips_a_pair():
    opt, _, steps = assert_same_trajectory(flat_quadratic, [0.0, 0.0], 20)
    assert steps[0] == 32.0 and opt.curvature_skips >= 1
