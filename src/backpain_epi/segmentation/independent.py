"""An independent family of lumbar Dixon phantoms, **for evaluation only**.

The network is trained on phantoms of :mod:`.phantom` (and on a domain-randomised
generator). A score on phantoms of the same generator can reward learning the
generator rather than the anatomy, so this module draws a second family with
its own geometry and its own image model; it shares only the output containers
(:class:`~.phantom_types.Phantom`, :class:`~.phantom_types.PhantomTargets`, the
:class:`~.phantom_types.Protocol` ranges) and :func:`~.exposures.compute_exposures`.
Never train on it.

*Geometry.* An internal grid (z, y, x), in millimetres on RAS world axes, is
painted slice by slice, in order, with two primitives of its own:

- a *bent ellipse*: a rotated ellipse whose minor coordinate is shifted by a
  parabola of the major one (``v - bend u**2``), so that one primitive gives
  ovals, beans and kidneys, with polar harmonics for an irregular outline;
- a *tapered capsule*: the points closer to a segment than a radius changing
  linearly along it (pedicles, laminae, spinous and transverse processes,
  facets).

The trunk is a polar outline: an asymmetric superellipse (flatter at the back)
with harmonics is the inner (fascial) contour; the subcutaneous fat is a
thickness profile (10-60 mm, often thicker at the back) laid outside it. The
spine is placed from the back (spinous tip under the fascia, laminae, canal, a
bean-shaped vertebral body with a cortex alternating with discs along z). Each
autochthonous compartment is a bent ellipse fitted between the vertebral arch
and the fascia, with fat behind it, wrapped in a fascia, with a
multifidus/longissimus fat septum; a caudally growing psoas, quadratus
lumborum, kidneys, liver, spleen, aorta/IVC and textured bowel with gas
complete it.

*Fat fraction.* Per tissue, plus smooth random fields (coarse noise upsampled
linearly per axis). InterMAT is the top-scoring 2-25 % of each compartment
under a craniocaudally elongated field, a pocket field and a peripheral weight
(and the septum first), with ff 0.55-0.95; lean muscle has ff 0.02-0.20 with
texture.

*Image model.* Not ``pd * (1 - ff)``, ``pd * ff``: water and fat
magnetisations get a spoiled-gradient-echo T1 weighting (flip angle, TR, tissue
T1 at 1.5 or 3 T; fat's T1 short) and T2* decay at the echo time, per tissue;
spectral leakage of fat into water (a single-peak two-point reconstruction of
multi-peak fat); separate water and fat receive gains; the root-sum-of-squares
sensitivity of a posterior and an anterior coil array; a slight 3-tap in-plane
blur; complex Gaussian noise, then the magnitude (Rician). Storage is int16 (a
random scanner range) or float32 (a random scale), in one of many axis orders
and directions; the slice axis is not always last.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage

from ..dictionary import load_dictionary
from .exposures import compute_exposures
from .phantom_types import PROTOCOLS, Phantom, PhantomTargets, Protocol

FAMILY = "independent"

#: Acquisition ranges used when ``protocol`` is None.
DEFAULT_PROTOCOL = Protocol(inplane_mm=(1.0, 2.0), slice_mm=(3.0, 5.0), slice_axes=(0, 1, 2), int16_prob=0.5)
SLAB_MM = (150.0, 250.0)
FOV_MM = ((340.0, 400.0), (260.0, 300.0))  # lateral, antero-posterior

# Tissues of the internal map; the last four are the labels.
(AIR, SUBCUT, FAT, WALL, FASCIA, BOWEL, GAS, KIDNEY, LIVER, SPLEEN, BLOOD, MARROW, CORTEX, DISC,
 ANNULUS, CSF, BONE, NERVE, QL, PSOAS_L, PSOAS_R, AUTO_L, AUTO_R) = range(23)
N_TISSUES = 23
LABEL_OF_TISSUE = np.zeros(N_TISSUES, np.uint8)
LABEL_OF_TISSUE[[AUTO_L, AUTO_R, PSOAS_L, PSOAS_R]] = [1, 2, 3, 4]

# Per tissue: proton density, fat fraction, ff texture, PD texture, water T1 (ms) at 1.5 T and at 3 T,
# water T2* and fat T2* (ms) at 1.5 T (x 0.65 at 3 T).
_MUSCLE = (0.80, 0.06, 0.02, 0.05, 1000, 1400, 30, 18)
_TAB = np.array([
    (0.0, 0.0, 0.0, 0.0, 1000, 1000, 1.0, 1.0),  # AIR
    (0.95, 0.93, 0.02, 0.03, 900, 1200, 30, 22),  # SUBCUT
    (0.93, 0.91, 0.03, 0.04, 900, 1200, 30, 20),  # FAT
    _MUSCLE,  # WALL
    (0.30, 0.25, 0.05, 0.10, 600, 800, 6, 6),  # FASCIA
    (0.80, 0.08, 0.05, 0.25, 900, 1250, 25, 15),  # BOWEL
    (0.01, 0.0, 0.0, 0.0, 1000, 1000, 1.0, 1.0),  # GAS
    (0.90, 0.02, 0.01, 0.05, 950, 1250, 40, 20),  # KIDNEY
    (0.75, 0.05, 0.01, 0.03, 590, 810, 28, 18),  # LIVER
    (0.85, 0.02, 0.01, 0.03, 1060, 1330, 40, 20),  # SPLEEN
    (0.90, 0.0, 0.0, 0.05, 1400, 1900, 50, 20),  # BLOOD
    (0.70, 0.50, 0.08, 0.05, 600, 700, 12, 10),  # MARROW
    (0.08, 0.20, 0.02, 0.10, 500, 600, 1.5, 1.5),  # CORTEX
    (0.90, 0.02, 0.01, 0.05, 1100, 1200, 60, 20),  # DISC
    (0.50, 0.04, 0.02, 0.05, 800, 1000, 10, 8),  # ANNULUS
    (1.00, 0.0, 0.0, 0.02, 4000, 4300, 200, 20),  # CSF
    (0.40, 0.45, 0.08, 0.10, 600, 700, 8, 7),  # BONE (posterior elements)
    (0.75, 0.02, 0.01, 0.05, 750, 950, 45, 20),  # NERVE
    _MUSCLE, _MUSCLE, _MUSCLE,  # QL, PSOAS_L, PSOAS_R
    (0.80, 0.08, 0.0, 0.05, 1000, 1400, 30, 18), (0.80, 0.08, 0.0, 0.05, 1000, 1400, 30, 18),  # AUTO_L, AUTO_R
])
FAT_T1_MS = {1.5: 260.0, 3.0: 380.0}

# Direction letters of (x, y, z) in the stored axes, the common ones more often.
_LETTERS = ("LAS", "LPI", "RAS", "LPS", "RPI", "LAI", "RPS", "RAI")
_LETTER_P = np.array([0.28, 0.2, 0.1, 0.1, 0.1, 0.08, 0.07, 0.07])


# --------------------------------------------------------------------------- primitives

def _bent_ellipse(x, y, cx, cy, a, b, angle=0.0, bend=0.0, wobble=None):
    """Normalised radius of a bent, rotated ellipse (inside where < 1).

    Parameters
    ----------
    x, y
        Coordinates (mm), broadcastable (a row and a column).
    cx, cy, a, b, angle
        Centre, semi-axes along the rotated u and v axes (mm), rotation (rad).
    bend
        The v coordinate is shifted by ``bend * u**2`` (in units of b): the
        ends move towards +v and the +v side becomes concave.
    wobble
        Optional ``(k, amplitude, phase)`` arrays of polar harmonics.

    Returns
    -------
    q, u, v : numpy.ndarray
        Normalised radius and the normalised, bent coordinates.
    """
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    u = (dx * c + dy * s) / a
    v = (dy * c - dx * s) / b - bend * u * u
    q = np.sqrt(u * u + v * v)
    if wobble is not None:
        phi = np.arctan2(v, u)
        q = q / (1.0 + sum(am * np.cos(k * phi + p) for k, am, p in zip(*wobble)))
    return q, u, v


def _capsule(x, y, p0, p1, r0, r1):
    """Signed distance (mm, negative inside) to a segment p0-p1 with radius r0 → r1 along it."""
    ex, ey = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((x - p0[0]) * ex + (y - p0[1]) * ey) / (ex * ex + ey * ey + 1e-9), 0.0, 1.0)
    return np.hypot(x - p0[0] - t * ex, y - p0[1] - t * ey) - (r0 + (r1 - r0) * t)


def _smooth_field(rng, shape, spacing, corr_mm):
    """A zero-mean, about unit-variance random field correlated over ``corr_mm`` (per axis).

    Gaussian noise on a coarse grid (step ``corr_mm / 2``), smoothed there and
    upsampled linearly one axis at a time (the largest pass last, along axis 0).
    """
    step = np.asarray(corr_mm, float) / 2.0
    nc = [int(np.ceil(n * s / st)) + 3 for n, s, st in zip(shape, spacing, step)]
    g = ndimage.gaussian_filter(rng.standard_normal(nc, dtype=np.float32), 1.0, mode="wrap")
    g /= g.std() + 1e-12
    for axis in (2, 1, 0):
        pos = np.arange(shape[axis]) * (spacing[axis] / step[axis]) + rng.uniform(0, 1)
        i0 = np.floor(pos).astype(np.intp)
        wshape = [1, 1, 1]
        wshape[axis] = -1
        lo = np.take(g, i0, axis=axis)
        g = np.take(g, i0 + 1, axis=axis)
        g -= lo
        g *= (pos - i0).astype(np.float32).reshape(wshape)
        g += lo
    g *= 1.25  # linear interpolation between smoothed nodes loses about a fifth of the spread
    return g


class _Grid:
    """The internal grid: array (z, y, x); world RAS coordinates of the voxel centres (mm)."""

    def __init__(self, x, y, z, dx, dz):
        self.x, self.y, self.z, self.dx, self.dz = x, y, z, dx, dz
        self.shape = (len(z), len(y), len(x))
        self.x0, self.y0 = float(x[0]), float(y[0])

    def box(self, cx, cy, rx, ry):
        """Row and column slices of the in-plane rectangle centre ± (rx, ry), and its coordinates."""
        nx, ny = len(self.x), len(self.y)
        i0 = min(nx, max(0, math.floor((cx - rx - self.x0) / self.dx)))
        i1 = min(nx, max(i0, math.ceil((cx + rx - self.x0) / self.dx) + 1))
        j0 = min(ny, max(0, math.floor((cy - ry - self.y0) / self.dx)))
        j1 = min(ny, max(j0, math.ceil((cy + ry - self.y0) / self.dx) + 1))
        sy, sx = slice(j0, j1), slice(i0, i1)
        return sy, sx, self.x[None, sx], self.y[sy, None]


@functools.lru_cache(maxsize=None)
def _allowed(*tissues):
    """Boolean look-up table of the given tissues (cached: do not modify it)."""
    a = np.zeros(N_TISSUES, bool)
    a[list(tissues)] = True
    return a


_SOFT = _allowed(FAT, BOWEL, LIVER, SPLEEN, WALL)


def _paint(tis, g, cx, cy, rx, ry, fn, value, allowed=None, extra=None):
    """Set ``tis`` to ``value`` where ``fn(X, Y) < 0`` in the box (on ``allowed`` tissues, where ``extra``)."""
    sy, sx, X, Y = g.box(cx, cy, rx, ry)
    if X.size and Y.size:
        m = fn(X, Y) < 0
        sub = tis[sy, sx]
        if allowed is not None:
            m &= allowed[sub]
        if extra is not None:
            m &= extra(sy, sx)
        sub[m] = value


def _ellipse_box(a, b, angle, bend, margin=3.0):
    """Half-sizes (rx, ry) of a box holding a bent ellipse, with 15 % for its wobble."""
    c, s = abs(math.cos(angle)), abs(math.sin(angle))
    return (1.15 * math.hypot(a * c, b * s) + abs(bend) * b * s + margin,
            1.15 * math.hypot(a * s, b * c) + abs(bend) * b * c + margin)


def _paint_ellipse(tis, g, side, xs, cx, cy, a, b, angle, bend, value, allowed=None, extra=None, grow=0.0,
                   wobble=None):
    """Paint a bent ellipse in mirrored coordinates: ``cx`` is lateral of ``xs`` on ``side`` (-1 left, +1 right).

    ``grow`` enlarges both semi-axes (mm), for fat planes and fasciae round a structure.
    """
    a, b = a + grow, b + grow
    _paint(tis, g, xs + side * cx, cy, *_ellipse_box(a, b, angle, bend),
           lambda X, Y: _bent_ellipse(side * (X - xs), Y, cx, cy, a, b, angle, bend, wobble)[0] - 1,
           value, allowed, extra)


def _paint_capsule(tis, g, p0, p1, r0, r1, value):
    r = max(r0, r1) + 1
    _paint(tis, g, 0.5 * (p0[0] + p1[0]), 0.5 * (p0[1] + p1[1]), 0.5 * abs(p1[0] - p0[0]) + r,
           0.5 * abs(p1[1] - p0[1]) + r, lambda X, Y: _capsule(X, Y, p0, p1, r0, r1), value)


# --------------------------------------------------------------------------- anatomy

def _wave(rng, amp, period=(150.0, 450.0)):
    """A smooth function of depth (mm): ``amp * sin(2 pi d / period + phase)``."""
    lam, ph = rng.uniform(*period), rng.uniform(0, 2 * np.pi)
    return lambda d: amp * math.sin(2 * math.pi * d / lam + ph)


def _wobble(rng, amp, ks=(2, 3, 4)):
    return np.array(ks), rng.uniform(0, amp, len(ks)), rng.uniform(0, 2 * np.pi, len(ks))


def _draw_body(rng, fov):
    """Trunk outline parameters (mm), fitted to the field of view; the sides may be cropped by up to 15 mm."""
    b = dict(a_in=rng.uniform(110, 150), b_ant=rng.uniform(70, 100), b_post=rng.uniform(66, 88),
             n_ant=rng.uniform(2.0, 2.5), n_post=rng.uniform(2.5, 3.3), xt=rng.uniform(-4, 4))
    t_base = rng.uniform(10, 45)
    for name, lo, hi in (("t_lat", 0.5, 1.1), ("t_ant", 0.7, 1.4), ("t_post", 0.8, 1.8)):
        b[name] = float(np.clip(t_base * rng.uniform(lo, hi), 10, 60))
    b["wob_in"] = _wobble(rng, 0.02, (2, 3, 4, 5))
    b["wob_t"] = _wobble(rng, 0.12, (1, 2, 3, 4))
    b["s_wave"], b["t_wave"] = _wave(rng, rng.uniform(0, 0.025)), _wave(rng, rng.uniform(0, 0.08))
    b["s_trend"] = rng.uniform(-0.02, 0.05)
    smax, tmax = 1.025 + max(b["s_trend"], 0), 1.08
    room = fov[1] - 14 - (b["b_ant"] + b["b_post"]) * smax  # antero-posterior: all of the trunk, with a margin
    t_sum = (b["t_ant"] + b["t_post"]) * tmax
    if t_sum > room:
        k = max(room, 20 * tmax) / t_sum
        b["t_ant"], b["t_post"] = max(10.0, b["t_ant"] * k), max(10.0, b["t_post"] * k)
    half = fov[0] / 2 + 3  # lateral: 15 mm cropped at most, 12 mm margin for the harmonics
    b["t_lat"] = float(np.clip((half - b["a_in"] * smax) / tmax, 10, b["t_lat"]))
    b["a_in"] = min(b["a_in"], (half - b["t_lat"] * tmax) / smax)
    b["ext_ant"] = b["b_ant"] * smax + b["t_ant"] * tmax
    b["ext_post"] = b["b_post"] * smax + b["t_post"] * tmax
    return b


def _harmonics(theta, wob):
    return 1.0 + sum(am * np.cos(k * theta + p) for k, am, p in zip(*wob))


def _inner_radius(body, theta):
    """Radius (mm) of the inner (fascial) trunk contour at polar angle ``theta``."""
    ant = np.sin(theta) >= 0
    bb, n = np.where(ant, body["b_ant"], body["b_post"]), np.where(ant, body["n_ant"], body["n_post"])
    r = (np.abs(np.cos(theta) / body["a_in"]) ** n + np.abs(np.sin(theta) / bb) ** n) ** (-1.0 / n)
    return r * _harmonics(theta, body["wob_in"])


def _fat_thickness(body, theta):
    """Subcutaneous fat thickness (mm) at ``theta``: thicker at the back in some."""
    sn = np.sin(theta)
    t = (body["t_lat"] + (body["t_ant"] - body["t_lat"]) * np.clip(sn, 0, None) ** 1.5
         + (body["t_post"] - body["t_lat"]) * np.clip(-sn, 0, None) ** 2)
    return np.clip(t * _harmonics(theta, body["wob_t"]), 10.0 / 0.92, 60.0 / 1.08)  # 10-60 mm after the z wave


def _draw_anatomy(rng, L):
    """Spine, muscle and organ parameters (mm, rad) of one phantom."""
    u = rng.uniform
    A = dict(
        P=u(30, 38), ph0=u(0, 40), disc=u(0.22, 0.3), L_sp=u(28, 40), tip_gap=u(1, 4), a_c=u(10, 12.5),
        b_c=u(7, 9), a_vb=u(20, 26), b_vb=u(14, 18), vb_bend=u(-0.3, -0.12), vb_grow=u(0.0, 0.15),
        tp_len=u(40, 55), tp_phase=u(0, 2 * np.pi), scol=_wave(rng, u(0, 1.5), (200, 600)), sp_wave=_wave(rng, 0.08),
        # autochthonous compartments (cross-section in cm²)
        A_auto=u(10, 22), auto_wave=_wave(rng, u(0.03, 0.12)), auto_taper=u(0, 0.2), gap=u(3, 9),
        auto_ang=u(-0.2, 0.1), auto_bend=u(0.0, 0.3), auto_asym=u(-0.05, 0.05), auto_wob=_wobble(rng, 0.04),
        septum=rng.random() < 0.7, sept_u=u(-0.45, -0.1), sept_c=u(-0.3, 0.3), sept_w=u(0.6, 1.3),
        # psoas (grows from depth psoas_d0), quadratus lumborum
        A_psoas=u(8, 18), psoas_d0=u(-50, 50), psoas_gam=u(0.7, 1.4), psoas_ratio=u(1.1, 1.6),
        psoas_ang=u(0.3, 0.9), psoas_dy=u(0.0, 0.4), psoas_asym=u(-0.08, 0.08), A_ql=u(2.0, 4.0),
        ql_grow=u(1.0, 3.0), ql_ang=u(-0.6, -0.15), ql_dy=u(-2, 6),
        # organs and vessels
        kid_d=u(-20, 30), kid_h=u(50, 60), kid_x=u(55, 72), kid_y=u(8, 25), kid_a=u(25, 32), kid_b=u(17, 23),
        kid_ang=u(0.3, 0.8), liver_d=u(0, 70), spleen_d=u(0, 40) if rng.random() < 0.6 else -1.0,
        ao_x=u(8, 18), ao_r=u(8, 12), ivc_x=u(14, 24), bif=u(2.6, 3.4), conus=u(0, 30), wall=u(8, 16),
    )
    A["kid_d"] = (A["kid_d"], A["kid_d"] + u(8, 20))  # the right kidney lies lower
    A["psoas_d0"] = min(A["psoas_d0"], L - 110)  # enough psoas (>= 10 mL a side) over the slab
    return A


def _paint_slab(g, body, A, L):
    """Paint the tissue map (z, y, x); also the compartments' normalised radius, septum and vertebral centres."""
    nz = g.shape[0]
    tissue = np.zeros(g.shape, np.uint8)
    qmap = np.zeros(g.shape, np.float32)
    septum = np.zeros(g.shape, bool)
    X, Y = g.x[None, :], g.y[:, None]
    theta = np.arctan2(Y, X - body["xt"])
    rho = np.hypot(X - body["xt"], Y).astype(np.float32)
    r_in0 = _inner_radius(body, theta).astype(np.float32)
    t_fat0 = _fat_thickness(body, theta).astype(np.float32)
    # depths along the rays, divided by this gradient norm, are distances normal to the contour
    inv_grad = 1.0 / np.clip(np.hypot(*np.gradient(r_in0 - rho, g.dx)), 0.3, None).astype(np.float32)
    fascia = max(1.5, 1.1 * g.dx)  # the posterior fascia is at least a pixel thick
    wall0 = (A["wall"] * np.clip(np.sin(theta) + 0.6, 0, None) ** 1.2 / 1.6 ** 1.2 + fascia).astype(np.float32)
    lateral = (np.abs(np.cos(theta)) > 0.45) & (wall0 > 6.0)
    posterior = np.sin(theta) < -0.55
    ang = np.linspace(-np.pi, 0, 721)[1:-1]  # the posterior inner contour, to fit the back muscles in
    r_post = _inner_radius(body, ang)
    fat_gap = max(A["gap"], 1.2 * g.dx)  # fat between the compartment's own fascia and the trunk's
    behind = fascia + 1.3 + max(0.5 * fat_gap, 1.2 * g.dx)  # the least distance from compartment to contour
    centres = []
    for k in range(nz):
        d = (nz - 1 - k) * g.dz  # depth below the slab top
        tis = tissue[k]
        s = 1.0 + body["s_wave"](d) + body["s_trend"] * d / L
        depth_in = (s * r_in0 - rho) * inv_grad  # distance inside the inner contour
        tis[depth_in > -(1.0 + body["t_wave"](d)) * t_fat0] = SUBCUT
        inner = depth_in > 0
        tis[inner] = BOWEL
        band = inner & (depth_in < wall0 * (1 + 0.1 * math.sin(d / 40)))
        tis[band] = WALL
        tis[band & posterior] = FASCIA
        tis[band & lateral & (np.abs(depth_in - wall0 * 0.45) < 0.7)] = FAT  # planes between the obliques
        tis[band & (np.abs(X - body["xt"]) < 2.0) & (Y > 0)] = FASCIA  # linea alba
        deep = inner & ~band
        deep_only = lambda sy, sx: deep[sy, sx]  # noqa: E731
        # the spine, placed from the back
        cx_p, cy_p = body["xt"] + s * r_post * np.cos(ang), s * r_post * np.sin(ang)
        order = np.argsort(cx_p)
        y_contour = lambda xq: np.interp(xq, cx_p[order], cy_p[order])  # noqa: E731
        xs = A["scol"](d)
        y_tip = float(y_contour(xs)) + 2.0 + A["tip_gap"]
        L_sp = A["L_sp"] * (1 + A["sp_wave"](d))
        ys = y_tip + L_sp + A["b_c"] + 6.0  # canal centre
        a_vb, b_vb = A["a_vb"] * (1.0 + A["vb_grow"] * d / L), A["b_vb"] * (1.0 + A["vb_grow"] * d / L)
        y_vb = ys + A["b_c"] * 0.9 + b_vb * 0.95
        # paraspinal and retroperitoneal fat, liver (patient right, x > 0) and spleen (left) in the upper slices
        _paint_ellipse(tis, g, 1, xs, 0.0, ys - 12, A["tp_len"] + 35, 70.0, 0.0, 0.3, FAT, _allowed(BOWEL), deep_only)
        _paint_ellipse(tis, g, 1, xs, 0.0, y_vb, 0.55 * s * body["a_in"], b_vb + 16, 0.0, -0.3, FAT,
                       _allowed(BOWEL), deep_only)
        if d < A["liver_d"]:
            f = math.sqrt(1 - d / A["liver_d"])
            _paint_ellipse(tis, g, 1, 0.0, 0.55 * s * body["a_in"], ys + 40, 62 * f + 5, 48 * f + 4, 0.3, 0.15,
                           LIVER, _SOFT, deep_only)
        if d < A["spleen_d"]:
            f = math.sqrt(1 - d / A["spleen_d"])
            _paint_ellipse(tis, g, 1, 0.0, -0.62 * s * body["a_in"], ys + 12, 34 * f + 4, 22 * f + 3, -0.7, 0.25,
                           SPLEEN, _SOFT, deep_only)
        tp = A["tp_len"] * (1 + 0.15 * math.sin(1.3 * math.floor((d + A["ph0"]) / A["P"]) + A["tp_phase"]))
        for side, auto_t, psoas_t in ((-1, AUTO_L, PSOAS_L), (1, AUTO_R, PSOAS_R)):
            asym = 1 + side * A["auto_asym"]
            c = 1 - ((d - A["kid_d"][side > 0]) / A["kid_h"]) ** 2
            if c > 0.02:  # kidney in perirenal fat, renal sinus fat towards the hilum
                c = math.sqrt(c)
                kid = (A["kid_x"] * (0.9 + 0.1 * c), ys + A["kid_y"], A["kid_a"] * c + 3, A["kid_b"] * c + 2,
                       A["kid_ang"], 0.35)
                _paint_ellipse(tis, g, side, xs, *kid, FAT, _SOFT, deep_only, grow=6.0)
                _paint_ellipse(tis, g, side, xs, *kid, KIDNEY, _allowed(FAT), deep_only)
                if c > 0.6:
                    kx, ky, ka, kb, kang, _ = kid
                    _paint_ellipse(tis, g, side, xs, kx - 0.35 * kb * math.sin(kang), ky + 0.35 * kb * math.cos(kang),
                                   0.4 * ka, 0.3 * kb, kang, 0.0, FAT, _allowed(KIDNEY))
            # quadratus lumborum, anterior to the transverse process tips, in a thin fat plane
            aq = math.sqrt((A["A_ql"] + A["ql_grow"] * d / L) * 200 / math.pi) * asym
            ql = (tp + 0.1 * aq, ys + A["ql_dy"] + aq / 4, aq, aq / 2, A["ql_ang"], 0.15)
            _paint_ellipse(tis, g, side, xs, *ql, FAT, _allowed(FAT, BOWEL, KIDNEY), deep_only, grow=1.5)
            _paint_ellipse(tis, g, side, xs, *ql, QL, _allowed(FAT), deep_only)
            # psoas, antero-lateral to the vertebral body, growing caudally
            frac = min(1.0, max(0.0, (d - A["psoas_d0"]) / (L - A["psoas_d0"])))
            area = A["A_psoas"] * frac ** A["psoas_gam"] * (1 + side * A["psoas_asym"])
            if area > 0.2:
                ap = math.sqrt(area * 100 / math.pi * A["psoas_ratio"])
                bp = ap / A["psoas_ratio"]
                ps = (a_vb * 0.8 + ap * math.cos(A["psoas_ang"]) * 0.9 + 1.0, y_vb + A["psoas_dy"] * b_vb + 0.5 * bp,
                      ap, bp, A["psoas_ang"], -0.1)
                _paint_ellipse(tis, g, side, xs, *ps, FAT, _SOFT | _allowed(KIDNEY, QL), deep_only, grow=2.0)
                _paint_ellipse(tis, g, side, xs, *ps, psoas_t, _allowed(FAT), deep_only)
            # autochthon: rounded, against the vertebral arch, with fat between it and the fascia
            y_front = ys - 3.0
            area = float(np.clip(A["A_auto"] * (1 + A["auto_wave"](d) - A["auto_taper"] * (d / L) ** 2) * asym, 8, 24))
            a_m, cm = 28.0, 32.0
            for _ in range(2):
                y_back = float(np.max(y_contour(xs + side * np.linspace(cm - 0.5 * a_m, cm + 0.5 * a_m, 9))))
                y_back += fascia + 1.3 + fat_gap
                # as deep as the room allows, but never narrower than 1.25 × nor wider than 2.2 × its depth
                b_m = min(max(8.0, (y_front - y_back) / (2.0 + A["auto_bend"])), math.sqrt(area * 100 / (1.25 * math.pi)))
                a_m = float(np.clip(area * 100 / (math.pi * b_m), 1.25 * b_m, 2.2 * b_m))
                cm = 3.0 + 0.92 * a_m
            ym = y_front - b_m * (1.0 + A["auto_bend"])  # the bend: front concave round the lamina, back convex
            lam_y, slope = ys - A["b_c"] - 8.0, (A["b_c"] + 6.0) / A["a_c"]

            def clip_auto(sy, sx, e=0.0, side=side):  # medial, behind the arch, away from the fascia
                Xm = side * (X[:, sx] - xs)
                arch = np.minimum(ys - 2.0, lam_y + slope * (Xm - 3.0))
                return (Xm > 2.0 - e) & (Y[sy] < arch + e) & (depth_in[sy, sx] > behind - e)

            auto = (cm, ym, a_m, b_m, A["auto_ang"], A["auto_bend"])
            _paint_ellipse(tis, g, side, xs, *auto, FASCIA, _allowed(FAT, QL, WALL),
                           lambda sy, sx: clip_auto(sy, sx, 1.3), grow=1.3, wobble=A["auto_wob"])
            sy, sx, Xb, Yb = g.box(xs + side * cm, ym, *_ellipse_box(a_m, b_m, A["auto_ang"], A["auto_bend"]))
            q, u, v = _bent_ellipse(side * (Xb - xs), Yb, *auto, A["auto_wob"])
            m = (q < 1) & clip_auto(sy, sx) & _allowed(FAT, FASCIA, QL, WALL)[tis[sy, sx]]
            tis[sy, sx][m] = auto_t
            qmap[k, sy, sx][m] = q[m]
            if A["septum"]:
                septum[k, sy, sx] |= m & (np.abs(u - A["sept_u"] - A["sept_c"] * v * v) < A["sept_w"] / a_m)
        # vessels in front of the spine (over soft tissue only)
        y_ao = y_vb + b_vb + A["ao_r"] + 2
        if d < A["bif"] * A["P"]:
            vessels = [(-A["ao_x"], y_ao, A["ao_r"], A["ao_r"]), (A["ivc_x"], y_ao - 2, 13.0, 9.0)]
        else:
            sp = 12 + 0.3 * (d - A["bif"] * A["P"])
            vessels = [(-sp, y_ao, 6.5, 6.5), (sp, y_ao, 6.5, 6.5), (-sp - 6, y_ao - 8, 8, 6.5), (sp + 6, y_ao - 8, 8, 6.5)]
        for vx, vy, va, vb in vessels:
            _paint_ellipse(tis, g, 1, 0.0, vx, vy, va, vb, 0.0, 0.0, BLOOD, _SOFT)
        # vertebral body (marrow in a cortex) or disc (nucleus in an annulus), posterior elements, canal
        f = ((d + A["ph0"]) / A["P"]) % 1.0
        fd = A["disc"]
        gb = (f - fd) / (1 - fd)
        sy, sx, Xb, Yb = g.box(xs, y_vb, a_vb + 8, a_vb + 8)
        sub = tis[sy, sx]
        if f < fd:
            q = _bent_ellipse(Xb, Yb, xs, y_vb, a_vb * 1.04, b_vb * 1.04, 0.0, A["vb_bend"])[0]
            sub[q < 1] = ANNULUS
            sub[q < 0.72] = DISC
        else:
            waist = 1 - 0.07 * math.sin(math.pi * gb)
            q = _bent_ellipse(Xb, Yb, xs, y_vb, a_vb * waist, b_vb * waist, 0.0, A["vb_bend"])[0]
            sub[q < 1] = CORTEX
            sub[q < 1 - 1.5 / b_vb] = MARROW
            centres.append((xs, y_vb, float(g.z[k])))
        arch = ys - A["b_c"] - 6.0
        for side in (-1, 1):
            ac = xs + side * A["a_c"]
            if 0.1 < gb < 0.6:  # pedicles
                _paint_capsule(tis, g, (ac + side * 2.5, ys - 1), (ac + side * 3.5, y_vb - 0.4 * b_vb), 4.0, 4.5, BONE)
            if 0.2 < gb < 0.55:  # transverse processes
                _paint_capsule(tis, g, (ac + side * 3, ys - 1), (xs + side * tp, ys - 3), 4.0, 2.8, BONE)
            if gb > 0.25 or f < 0.08:  # laminae
                _paint_capsule(tis, g, (ac + side * 3, ys - 2), (xs + side * 2.0, arch), 3.5, 3.0, BONE)
            if f < fd + 0.08:  # facet joints
                _paint_capsule(tis, g, (ac + side * 4, ys - 4), (ac + side * 7, ys - 13), 4.5, 3.5, BONE)
        _paint_capsule(tis, g, (xs, arch), (xs, y_tip), 1.3, 1.3, FASCIA)  # interspinous ligament
        if gb > 0.35 or f < 0.5 * fd:
            _paint_capsule(tis, g, (xs, arch), (xs, y_tip), 3.0, 4.5, BONE)  # spinous process
        _paint_ellipse(tis, g, 1, xs, 0.0, ys - 2.5, A["a_c"] * 1.15, A["b_c"] * 1.15, 0.0, 0.2, FAT)  # epidural fat
        _paint_ellipse(tis, g, 1, xs, 0.0, ys, A["a_c"], A["b_c"], 0.0, 0.2, CSF)
        if d < A["conus"]:
            _paint_ellipse(tis, g, 1, xs, 0.0, ys, 4.0, 4.0, 0.0, 0.0, NERVE)
    return tissue, qmap, septum, np.array(centres)


# --------------------------------------------------------------------------- fat fraction and images

def _fat_fraction(rng, tissue, qmap, septum, g):
    """Noise-free fat fraction and proton density per voxel (internal grid); bowel gets fat and gas."""
    Fa = _smooth_field(rng, g.shape, (g.dz, g.dx, g.dx), (rng.uniform(12, 25),) + (rng.uniform(6, 12),) * 2)
    Fb = _smooth_field(rng, g.shape, (g.dz, g.dx, g.dx), (rng.uniform(6, 12),) + (rng.uniform(3, 6),) * 2)
    tab = _TAB.copy()
    tab[MARROW, 1], tab[LIVER, 1] = rng.uniform(0.38, 0.62), rng.uniform(0.02, 0.15)
    tab[[QL, PSOAS_L, PSOAS_R, WALL], 1] = rng.uniform(0.03, 0.10, 4)
    tab[:, 0] *= rng.uniform(0.93, 1.07, N_TISSUES)  # per-phantom tissue variation
    bowel = np.flatnonzero(tissue == BOWEL)
    tv = tissue.ravel()
    tv[bowel[Fa.ravel()[bowel] > rng.uniform(0.9, 1.6)]] = FAT  # mesenteric fat
    tv[bowel[Fb.ravel()[bowel] > rng.uniform(1.5, 2.1)]] = GAS
    lut = tab.astype(np.float32)
    ff = np.take(lut[:, 2], tissue)
    ff *= Fb
    ff += np.take(lut[:, 1], tissue)
    pd = np.take(lut[:, 3], tissue)
    pd *= Fa
    pd += 1.0
    pd *= np.take(lut[:, 0], tissue)
    np.clip(pd, 0.0, None, out=pd)
    # the autochthonous compartments: lean muscle, and InterMAT where a score is highest (septum first)
    imf, f_im = rng.uniform(0.02, 0.17), rng.uniform(0.02, 0.25)
    comp = np.flatnonzero(_allowed(AUTO_L, AUTO_R)[tv])
    zyx = np.unravel_index(comp, g.shape)
    lo = np.array([i.min() for i in zyx])
    streak = _smooth_field(rng, tuple(np.array([i.max() for i in zyx]) + 1 - lo), (g.dz, g.dx, g.dx),
                           (rng.uniform(12, 30), rng.uniform(2.5, 5), rng.uniform(2.5, 5)))
    q, fb = qmap.ravel()[comp], Fb.ravel()[comp]
    score = 0.75 * streak[tuple(i - o for i, o in zip(zyx, lo))] + 0.5 * Fa.ravel()[comp] + rng.uniform(0, 1.5) * q ** 3
    ffc = np.clip(imf * np.exp(0.3 * fb) * (1 + 0.2 * q * q), 0.01, 0.35).astype(np.float32)
    rank = score + 100.0 * septum.ravel()[comp]
    is_left = tv[comp] == AUTO_L
    for idx in (np.flatnonzero(is_left), np.flatnonzero(~is_left)):
        n_im = int(round(np.clip(f_im * rng.uniform(0.8, 1.2), 0.02, 0.25) * idx.size))
        if n_im:
            top = idx[np.argpartition(-rank[idx], n_im - 1)[:n_im]]
            ffc[top] = np.clip(0.6 + 0.3 * np.tanh(score[top] - score[top].min()) + 0.04 * fb[top], 0.55, 0.95)
    ff.ravel()[comp] = ffc
    np.clip(ff, 0.0, 1.0, out=ff)
    return ff, pd


def _spgr(t1, t2s, flip, tr, te):
    """Spoiled gradient-echo signal per unit magnetisation."""
    e1 = np.exp(-tr / t1)
    return np.sin(flip) * (1 - e1) / (1 - np.cos(flip) * e1) * np.exp(-te / t2s)


def _coil(rng, g, body):
    """Root-sum-of-squares sensitivity of a posterior and an anterior receive array, about 1 mid-body."""
    z = g.z - g.z.mean()
    coils = [(xc + rng.uniform(-15, 15), y0 + rng.uniform(-5, 5), zc + rng.uniform(-20, 20), rng.uniform(90, 170),
              rng.uniform(0.6, 1.0))
             for y0, xcs in ((-body["ext_post"] - 10, (-70, 0, 70)), (body["ext_ant"] + 10, (-90, 0, 90)))
             for xc in xcs for zc in (-90, 0, 90)]
    P = np.stack([w * np.exp(-((g.x[None, :] - xc) ** 2 + (g.y[:, None] - yc) ** 2) / (2 * sg ** 2))
                  for xc, yc, zc, sg, w in coils]).reshape(len(coils), -1) ** 2
    Q = np.stack([np.exp(-((z - zc) ** 2) / (2 * (1.4 * sg) ** 2)) for xc, yc, zc, sg, w in coils], 1) ** 2
    c = np.sqrt(Q.astype(np.float32) @ P.astype(np.float32)).reshape(g.shape)
    c /= c[len(z) // 2, np.abs(g.y).argmin(), np.abs(g.x - body["xt"]).argmin()] + 1e-12
    return 0.25 + 0.75 * c


def _dixon(rng, tissue, ff, pd, g, body):
    """Water and fat magnitude images of a two-point Dixon acquisition (internal grid), and its settings."""
    field = 1.5 if rng.random() < 0.4 else 3.0
    flip, tr, te = np.deg2rad(rng.uniform(8, 15)), rng.uniform(5, 8), rng.uniform(1.8, 3.5)
    t2 = _TAB[:, 6:8] * (1.0 if field == 1.5 else 0.65)
    kw = _spgr(_TAB[:, 4 if field == 1.5 else 5] * rng.uniform(0.9, 1.1, N_TISSUES),
               t2[:, 0] * rng.uniform(0.85, 1.15, N_TISSUES), flip, tr, te)
    kf = _spgr(FAT_T1_MS[field] * rng.uniform(0.9, 1.1), t2[:, 1], flip, tr, te)
    kw, kf = (kw / kf[SUBCUT]).astype(np.float32), (kf / kf[SUBCUT]).astype(np.float32)
    base = pd * _coil(rng, g, body)
    gw, gf = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)
    leak_fw, leak_wf = rng.uniform(0.02, 0.08), rng.uniform(0.0, 0.02)
    sf = np.take(kf, tissue)
    sf *= base
    sf *= ff
    sw = np.take(kw, tissue)
    sw *= base
    tmp = np.subtract(1.0, ff, out=base)
    sw *= tmp
    # a single-peak reconstruction of multi-peak fat: some fat signal lands in the water image, and vice versa
    water = sw * np.float32(gw)
    water += np.multiply(sf, np.float32(gw * leak_fw), out=tmp)
    fat = sf
    fat *= np.float32(gf * (1 - leak_fw))
    fat += np.multiply(sw, np.float32(gf * leak_wf), out=tmp)
    # the fat fraction these images carry before blur and noise: what fat / (water + fat) measures (T1 and T2*
    # weighting, receive gains and leakage included); the tissue's proton-density fat fraction is ``ff``
    total = water + fat
    ff_signal = np.divide(fat, total, out=np.zeros_like(total), where=total > 0)
    buf = sw
    w = rng.uniform(0.04, 0.18)
    for img in (water, fat):  # slight in-plane blur (partial volume)
        for axis in (1, 2):
            img[...] = ndimage.convolve1d(img, np.array([w, 1 - 2 * w, w], np.float32), axis=axis, output=buf,
                                          mode="nearest")
    muscle = gw * _TAB[WALL, 0] * kw[WALL]
    sigma = muscle / rng.uniform(15, 50)
    for img in (water, fat):  # complex Gaussian noise n = r exp(i phi) (Box-Muller), then the magnitude |s + n|
        r2 = rng.random(img.shape, dtype=np.float32, out=buf)
        np.log(np.subtract(1.0, r2, out=r2), out=r2)
        r2 *= np.float32(-2 * sigma ** 2)  # |n|^2
        c = rng.random(img.shape, dtype=np.float32, out=tmp)
        c *= np.float32(2 * np.pi)
        np.cos(c, out=c)
        c *= np.sqrt(r2)
        c *= 2 * img  # 2 s |n| cos(phi)
        c += r2
        img *= img
        img += c
        np.sqrt(np.clip(img, 0, None, out=img), out=img)
    return water, fat, ff_signal, dict(field_T=field, flip_deg=float(np.rad2deg(flip)), tr_ms=float(tr), te_ms=float(te),
                                       snr=float(muscle / sigma))


def _orientation(rng, protocol):
    """Per stored axis: (world axis, 0/1/2 for x/y/z, and its direction, ±1)."""
    letters = _LETTERS[rng.choice(len(_LETTERS), p=_LETTER_P)]
    axes = tuple(protocol.slice_axes)
    p = np.array([0.6 if a == 2 else 0.4 / (len(axes) - 1) for a in axes]) if 2 in axes and len(axes) > 1 else None
    slice_axis = int(axes[rng.choice(len(axes), p=p)])
    inplane = [0, 1] if rng.random() < 0.75 else [1, 0]
    return [(w, 1 if letters[w] in "RAS" else -1) for w in inplane[:slice_axis] + [2] + inplane[slice_axis:]]


# --------------------------------------------------------------------------- public

def make_independent_phantom(seed, protocol=None) -> Phantom:
    """Draw one phantom of the independent family (for evaluation only).

    Parameters
    ----------
    seed
        Anything :func:`numpy.random.default_rng` accepts (an int, a
        :class:`numpy.random.SeedSequence`); the same seed gives the same
        phantom.
    protocol
        ``None`` (:data:`DEFAULT_PROTOCOL`: pixels 1.0-2.0 mm, slices 3-5 mm,
        any slice axis), a :class:`~.phantom_types.Protocol` or a name of
        :data:`~.phantom_types.PROTOCOLS`: its pixel and slice ranges, slice axes and
        int16 probability are used.

    Returns
    -------
    Phantom
        ``water``, ``fat`` (int16 or float32), ``labels`` (uint8, 0-4) and
        ``ff`` (float32: the fat fraction ``fat / (water + fat)`` that the images
        carry before blur and noise, i.e. with their T1 and T2* weighting, receive
        gains and fat-water leakage; the exposures are defined on it), all in the
        stored orientation of ``affine``; ``exposures`` computed from ``labels``
        and ``ff``; ``meta["pdff_exposures"]`` the same from the tissues'
        proton-density fat fraction (what a calibrated, T1-corrected protocol
        would measure); ``targets`` those exposures clipped to the limits of
        :class:`~.phantom_types.PhantomTargets`; ``meta`` with ``family``,
        ``spacing_mm`` (stored axis order), ``axcodes``, ``dtype``,
        ``slice_axis``, the acquisition settings and ``vertebral_body_mm``
        (world RAS centroid of the vertebral bodies).
    """
    proto = DEFAULT_PROTOCOL if protocol is None else PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    r_geo, r_tex, r_img, r_ori = np.random.default_rng(seed).spawn(4)
    dx, dz = float(r_geo.uniform(*proto.inplane_mm)), float(r_geo.uniform(*proto.slice_mm))
    nz = max(8, int(round(r_geo.uniform(*SLAB_MM) / dz)))
    L = nz * dz
    fov = (float(r_geo.uniform(*FOV_MM[0])), float(r_geo.uniform(*FOV_MM[1])))
    body = _draw_body(r_geo, fov)
    A = _draw_anatomy(r_geo, L)
    nx, ny = int(round(fov[0] / dx)), int(round(fov[1] / dx))
    xc = body["xt"] + r_geo.uniform(-10, 10)  # x = 0 is the patient's midline (the spine)
    yc = 0.5 * (body["ext_ant"] - body["ext_post"])
    yc += r_geo.uniform(-1, 1) * max(0.0, 0.5 * fov[1] - 6 - 0.5 * (body["ext_ant"] + body["ext_post"]))
    g = _Grid((xc + (np.arange(nx) - (nx - 1) / 2) * dx).astype(np.float32),
              (yc + (np.arange(ny) - (ny - 1) / 2) * dx).astype(np.float32),
              ((np.arange(nz) - (nz - 1) / 2) * dz).astype(np.float32), dx, dz)
    tissue, qmap, septum, centres = _paint_slab(g, body, A, L)
    ff, pd = _fat_fraction(r_tex, tissue, qmap, septum, g)
    del qmap, septum
    water, fat, ff_signal, acq = _dixon(r_img, tissue, ff, pd, g, body)
    labels = LABEL_OF_TISSUE[tissue]
    del tissue, pd

    # storage: axis order and directions, world origin, dtype and scale
    axes = _orientation(r_ori, proto)
    internal_axis = (2, 1, 0)  # of world x, y, z
    spacing = (dx, dx, dz)
    shift = np.array([0.0, r_ori.uniform(-30, 30), r_ori.uniform(-80, 80)])  # table position
    perm = [internal_axis[w] for w, _ in axes]
    flips = tuple(slice(None, None, -1) if sgn < 0 else slice(None) for _, sgn in axes)
    affine = np.zeros((4, 4))
    affine[3, 3] = 1.0
    affine[:3, 3] = np.array([g.x[0], g.y[0], g.z[0]], float) + shift
    for a, (w, sgn) in enumerate(axes):
        affine[w, a] = sgn * spacing[w]
        if sgn < 0:
            affine[w, 3] += (g.shape[internal_axis[w]] - 1) * spacing[w]

    def store(arr):
        return np.ascontiguousarray(arr.transpose(perm)[flips])

    vmax = float(max(water.max(), fat.max()))
    if r_ori.random() < proto.int16_prob:
        dtype, scale = "int16", r_ori.uniform(1500, 30000) / vmax
        water, fat = (store(np.rint(im * scale).astype(np.int16)) for im in (water, fat))
    else:
        dtype, scale = "float32", 10 ** r_ori.uniform(-1, 3) / vmax
        water, fat = (store((im * scale).astype(np.float32)) for im in (water, fat))
    labels, pdff, ff = store(labels), store(ff), store(ff_signal)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    exposures = compute_exposures(labels, ff, voxel_ml)
    tissue_truth = compute_exposures(labels, pdff, voxel_ml)
    planted = load_dictionary().primary_exposures  # the targets (see phantom_types)
    targets = PhantomTargets.nearest(**{k: exposures[k] for k in planted})
    meta = dict(family=FAMILY, spacing_mm=[float(spacing[w]) for w, _ in axes],
                axcodes="".join(("RL", "AP", "SI")[w][sgn < 0] for w, sgn in axes), dtype=dtype,
                slice_axis=[w for w, _ in axes].index(2), slab_mm=float(L), fov_mm=[fov[0], fov[1]],
                subcut_fat_mm=dict(lateral=float(body["t_lat"]), anterior=float(body["t_ant"]),
                                   posterior=float(body["t_post"])),
                vertebral_body_mm=[float(v) for v in centres.mean(0) + shift], intensity_scale=float(scale),
                pdff_exposures={k: float(tissue_truth[k]) for k in planted}, **acq)
    return Phantom(water=water, fat=fat, labels=labels, ff=ff, affine=affine, exposures=exposures, targets=targets,
                   meta=meta)
