"""Compositional pattern-producing networks (CPPNs), evolved as NumPy batches.

A CPPN draws an image from the pixel coordinates: x and y in [-span, span] (default 1), the
distance d to the centre and a bias go through a small feed-forward network of sine, sigmoid,
Gaussian and linear units, and each output channel is sigmoid(output). Genomes live in batches
(:class:`CPPN`): fixed-size arrays of weights and masks, so rendering (float32 batched matrix
products in torch) and mutating P genomes are a handful of array operations rather than P
graph walks. Crossover swaps whole rows (a node or an output with its incoming connections).
Every random choice comes from the ``numpy.random.Generator`` passed in, in a fixed order, so
a seed gives the same genomes.

Used by :mod:`cnnpipe.stages.fooling` (evolved fooling images, Nguyen et al. 2015); nothing here
knows about networks that classify."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# Unit types of the hidden nodes, in the order of their codes.
ACTIVATIONS = ("sine", "sigmoid", "gaussian", "linear")
N_INPUTS = 4  # x, y, d, bias
WEIGHT_LIMIT = 3.0
LINEAR_LIMIT = 5.0  # linear units are clipped here so deep chains stay bounded


def coordinates(height: int, width: int, span: float = 1.0) -> np.ndarray:
    """CPPN inputs [4, H*W]: x and y in [-span, span], d = distance to the centre / sqrt(2) (so
    in [0, span]), bias 1. A larger span shows more of the CPPN's plane: finer patterns."""
    ys = np.linspace(-span, span, height)
    xs = np.linspace(-span, span, width)
    y, x = np.meshgrid(ys, xs, indexing="ij")
    d = np.sqrt(x**2 + y**2) / math.sqrt(2.0)
    return np.stack([x.ravel(), y.ravel(), d.ravel(), np.ones(height * width)])


def _activate(z, codes: np.ndarray):
    """Apply each genome's unit type (codes [P]) to its pre-activations z [P, N] (a tensor, or
    a NumPy array, which gives a NumPy array back)."""
    is_numpy = isinstance(z, np.ndarray)
    z = torch.as_tensor(z)
    out = torch.empty_like(z)
    # Each unit type only on the genomes that use it (computing all four for all costs 4x).
    for code, fn in enumerate(_UNIT_FUNCTIONS):
        rows = torch.from_numpy(np.asarray(codes) == code)
        if rows.any():
            out[rows] = fn(z[rows])
    return out.numpy() if is_numpy else out


_UNIT_FUNCTIONS = (
    torch.sin,
    torch.sigmoid,
    lambda z: torch.exp(-0.5 * torch.clamp(z * z, max=200.0)),
    lambda z: torch.clamp(z, -LINEAR_LIMIT, LINEAR_LIMIT),
)


@dataclass
class CPPN:
    """A batch of P CPPN genomes with room for ``hidden`` hidden nodes each.

    Hidden node j reads the 4 inputs and hidden nodes < j (a feed-forward DAG in slot order);
    the C output nodes read everything, and pixel = sigmoid(output). ``weights`` [P, R, S]
    (R = hidden + C rows, S = 4 + hidden sources), ``enabled`` [P, R, S] which connections
    exist, ``active`` [P, hidden] which hidden slots hold a node, ``units`` [P, hidden] codes
    into ``ACTIVATIONS``.
    """

    weights: np.ndarray
    enabled: np.ndarray
    active: np.ndarray
    units: np.ndarray

    @property
    def size(self) -> int:
        return self.weights.shape[0]

    @property
    def hidden(self) -> int:
        return self.active.shape[1]

    @property
    def channels(self) -> int:
        return self.weights.shape[1] - self.hidden

    def take(self, index) -> CPPN:
        index = np.asarray(index)
        return CPPN(self.weights[index].copy(), self.enabled[index].copy(), self.active[index].copy(),
                    self.units[index].copy())

    def put(self, index, other: CPPN) -> None:
        self.weights[index], self.enabled[index] = other.weights, other.enabled
        self.active[index], self.units[index] = other.active, other.units

    def nodes(self) -> np.ndarray:
        """Number of hidden nodes per genome [P]."""
        return self.active.sum(axis=1)

    def connections(self) -> np.ndarray:
        """Number of live connections per genome [P]."""
        return (self.enabled & self.live_sources()[:, None, :]).sum(axis=(1, 2))

    def live_sources(self) -> np.ndarray:
        """[P, S]: inputs always, hidden sources where the slot is active."""
        return np.concatenate([np.ones((self.size, N_INPUTS), dtype=bool), self.active], axis=1)


def allowed_connections(hidden: int, channels: int) -> np.ndarray:
    """[R, S] mask of possible connections: hidden j <- inputs and hidden < j; outputs <- all."""
    rows = hidden + channels
    mask = np.zeros((rows, N_INPUTS + hidden), dtype=bool)
    for j in range(hidden):
        mask[j, : N_INPUTS + j] = True
    mask[hidden:, :] = True
    return mask


def random_cppn(rng: np.random.Generator, size: int, hidden: int, channels: int, initial_nodes: int = 2) -> CPPN:
    """``size`` random minimal genomes: ``initial_nodes`` hidden nodes of random types, every
    allowed connection among them present, weights ~ N(0, 1)."""
    if not 0 <= initial_nodes <= hidden:
        raise ValueError(f"initial_nodes must be in 0..{hidden}, got {initial_nodes}")
    rows, sources = hidden + channels, N_INPUTS + hidden
    active = np.zeros((size, hidden), dtype=bool)
    active[:, :initial_nodes] = True
    live = np.concatenate([np.ones((size, N_INPUTS), dtype=bool), active], axis=1)
    row_live = np.concatenate([active, np.ones((size, channels), dtype=bool)], axis=1)
    enabled = allowed_connections(hidden, channels)[None] & live[:, None, :] & row_live[:, :, None]
    weights = np.clip(rng.normal(0.0, 1.0, (size, rows, sources)), -WEIGHT_LIMIT, WEIGHT_LIMIT)
    units = rng.integers(0, len(ACTIVATIONS), (size, hidden)).astype(np.int8)
    return CPPN(weights * enabled, enabled, active, units)


def render_cppn(genomes: CPPN, height: int, width: int, span: float = 1.0) -> np.ndarray:
    """Images [P, C, H, W] in (0, 1) as float32, all genomes at once (in torch: float32 batched
    matrix products are several times faster than NumPy's float64 einsum)."""
    coords = torch.from_numpy(coordinates(height, width, span)).float()
    p, hidden = genomes.size, genomes.hidden
    values = torch.zeros(p, N_INPUTS + hidden, height * width)
    values[:, :N_INPUTS] = coords
    w = torch.from_numpy(genomes.weights * genomes.enabled * genomes.live_sources()[:, None, :]).float()
    for j in range(hidden):
        active = genomes.active[:, j]
        if not active.any():
            continue
        z = torch.bmm(w[:, j : j + 1, : N_INPUTS + j], values[:, : N_INPUTS + j])[:, 0]
        values[:, N_INPUTS + j] = _activate(z, genomes.units[:, j]) * torch.from_numpy(active)[:, None]
    z = torch.bmm(w[:, hidden:], values)
    return torch.sigmoid(z).reshape(p, genomes.channels, height, width).numpy()


def _pick(rng: np.random.Generator, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One random True position per genome of mask [P, ...]: (flat index [P], has-one [P])."""
    keys = np.where(mask, rng.random(mask.shape), -1.0).reshape(len(mask), -1)
    return keys.argmax(axis=1), keys.max(axis=1) >= 0


def _add_nodes(g: CPPN, rng: np.random.Generator, rate: float) -> None:
    """With probability ``rate`` per genome, a node of random type in the first free slot,
    wired from a random non-empty subset of the live sources it may read and to every output."""
    p, hidden, channels = g.size, g.hidden, g.channels
    allowed = allowed_connections(hidden, channels)
    free = ~g.active
    adding = (rng.random(p) < rate) & free.any(axis=1)
    slot = free.argmax(axis=1)
    for i in np.flatnonzero(adding):
        j = slot[i]
        g.active[i, j] = True
        g.units[i, j] = rng.integers(0, len(ACTIVATIONS))
        live = g.live_sources()[i] & allowed[j]
        wire = live & (rng.random(live.shape) < 0.5)
        wire[rng.choice(np.flatnonzero(live))] = True
        g.enabled[i, j] = wire
        g.weights[i, j] = np.where(wire, rng.normal(0.0, 1.0, live.shape), 0.0)
        g.enabled[i, hidden:, N_INPUTS + j] = True
        g.weights[i, hidden:, N_INPUTS + j] = rng.normal(0.0, 1.0, channels)


def _possible_connections(g: CPPN) -> np.ndarray:
    """[P, R, S]: connections allowed by slot order between live nodes."""
    live = g.live_sources()[:, None, :]
    row_live = np.concatenate([g.active, np.ones((g.size, g.channels), dtype=bool)], axis=1)[:, :, None]
    return allowed_connections(g.hidden, g.channels)[None] & live & row_live


def _toggle_connections(g: CPPN, rng: np.random.Generator, possible: np.ndarray, add: float, remove: float) -> None:
    """Add one absent connection (probability ``add``), then remove one present connection
    (probability ``remove``) unless that leaves an output without inputs."""
    p, hidden = g.size, g.hidden
    rows = np.arange(p)
    index, has = _pick(rng, possible & ~g.enabled)
    adding = has & (rng.random(p) < add)
    flat_enabled, flat_weights = g.enabled.reshape(p, -1), g.weights.reshape(p, -1)
    flat_enabled[rows[adding], index[adding]] = True
    flat_weights[rows[adding], index[adding]] = rng.normal(0.0, 1.0, adding.sum())

    index, has = _pick(rng, possible & g.enabled)
    removing = has & (rng.random(p) < remove)
    flat_enabled[rows[removing], index[removing]] = False
    into_output = (g.enabled & possible)[:, hidden:].any(axis=2).all(axis=1)
    undo = removing & ~into_output
    flat_enabled[rows[undo], index[undo]] = True


def _change_units(g: CPPN, rng: np.random.Generator, rate: float) -> None:
    """With probability ``rate`` per genome, a random live hidden node gets a random type."""
    rows = np.arange(g.size)
    index, has = _pick(rng, g.active)
    changing = has & (rng.random(g.size) < rate)
    g.units[rows[changing], index[changing]] = rng.integers(0, len(ACTIVATIONS), changing.sum())


def _perturb_weights(g: CPPN, rng: np.random.Generator, possible: np.ndarray, rate: float, sigma) -> None:
    """Gaussian noise (standard deviation ``sigma``: one for all, or one per genome [P]) on each
    present weight with probability ``rate``, and on at least one per genome, so no child is a
    plain copy; weights stay within +-WEIGHT_LIMIT."""
    p = g.size
    rows = np.arange(p)
    present = g.enabled & possible
    perturb = present & (rng.random(present.shape) < rate)
    index, has = _pick(rng, present)
    perturb.reshape(p, -1)[rows[has], index[has]] = True
    noise = rng.normal(0.0, 1.0, g.weights.shape) * np.reshape(sigma, (-1, 1, 1))
    g.weights = np.clip(np.where(perturb, g.weights + noise, g.weights), -WEIGHT_LIMIT, WEIGHT_LIMIT)
    g.weights = g.weights * g.enabled


def crossover(a: CPPN, b: CPPN, rng: np.random.Generator) -> CPPN:
    """Children [P] of the parents ``a[i]`` and ``b[i]``: every row of the genome (a hidden slot
    with its incoming connections, its unit type and whether it holds a node; an output with
    its incoming connections) comes whole from one parent, each with probability 1/2.
    Connections from slots the child leaves empty are dropped (they would read nothing)."""
    if a.weights.shape != b.weights.shape:
        raise ValueError(f"crossover: parents of different shapes {a.weights.shape} and {b.weights.shape}")
    from_b = rng.random(a.weights.shape[:2]) < 0.5  # [P, R]
    rows, slots = from_b[:, :, None], from_b[:, : a.hidden]
    child = CPPN(np.where(rows, b.weights, a.weights), np.where(rows, b.enabled, a.enabled),
                 np.where(slots, b.active, a.active), np.where(slots, b.units, a.units))
    child.enabled &= _possible_connections(child)
    child.weights = child.weights * child.enabled
    return child


# Default probabilities per genome of the structural mutations (``mutate``'s keywords).
STRUCTURE_RATES = {"add_node": 0.1, "add_connection": 0.15, "remove_connection": 0.05, "change_unit": 0.05}


def mutate(
    genomes: CPPN,
    rng: np.random.Generator,
    *,
    weight_rate: float = 0.2,
    weight_sigma: float | np.ndarray = 0.5,
    add_node: float = STRUCTURE_RATES["add_node"],
    add_connection: float = STRUCTURE_RATES["add_connection"],
    remove_connection: float = STRUCTURE_RATES["remove_connection"],
    change_unit: float = STRUCTURE_RATES["change_unit"],
) -> CPPN:
    """Mutated copies: perturb weights (standard deviation ``weight_sigma``, one for all or one
    per genome [P]), add a node (next free slot, wired to a random subset of the live nodes and
    to every output), add or remove a connection, change a unit's type. Every child changes at
    least one weight. The steps draw from ``rng`` in this order."""
    g = genomes.take(np.arange(genomes.size))
    _add_nodes(g, rng, add_node)
    possible = _possible_connections(g)  # after the new nodes, before connections change
    _toggle_connections(g, rng, possible, add_connection, remove_connection)
    _change_units(g, rng, change_unit)
    _perturb_weights(g, rng, possible, weight_rate, weight_sigma)
    return g
