"""The separation model's card: ``models/separation/card.html`` (``model/static/separation/``).

Same headings as the latent model's card (:mod:`harps_service.modelcard`):
details from the checkpoint's description (what ``harps-separate`` writes
beside its table), the design, the products, and the validation as
``bench/telluric.py --out`` measured it (``validation.json``), goals and
misses included.
"""

from __future__ import annotations

from html import escape
from typing import Any

from harps_service.modelcard import table_html
from harps_site import schema_of


def _markdown_table(text: str) -> str:
    """A pipe table (as bench/telluric.py writes it) as HTML; ``**x**`` becomes bold."""
    rows = [ln.strip().strip("|").split("|") for ln in text.splitlines()
            if ln.strip().startswith("|") and not set(ln.strip()) <= set("|-: ")]
    if not rows:
        return ""

    def cell(c: str, tag: str) -> str:
        c = escape(c.strip())
        while c.count("**") >= 2:
            c = c.replace("**", "<b>", 1).replace("**", "</b>", 1)
        return f"<{tag}>{c}</{tag}>"
    head = "".join(cell(c, "th") for c in rows[0])
    body = "".join("<tr>" + "".join(cell(c, "td") for c in r) + "</tr>" for r in rows[1:])
    return f"<table><tr>{head}</tr>{body}</table>"


def _validation(validation: dict[str, Any] | None) -> str:
    if not validation:
        return ("<h2>Validation</h2><p>No validation numbers were published with this "
                "model (<code>harps-latents separation --validation</code>).</p>")
    notes = "".join(f"<li>{escape(n)}</li>" for n in validation.get("notes", []))
    command = escape(validation.get("command", "bench/telluric.py"))
    return f"""<h2>Validation</h2>
<p>Measured by <code>{command}</code> on the spectra of held-out synthetic stars
against the truth <code>harps-synth --truth</code> wrote (the model never saw them), and on
the 52 real alpha Cen B spectra (24 nights, BERV +18 to -4 km/s), which were among its
training spectra: separation uses no labels and is fitted to the archive it serves.  "No
correction" is the observed spectrum; the baseline is the median of a star's spectra in
the barycentric frame as its stellar template, which needs many epochs of one star at
different BERV (it does better than this model where a star has them, and cannot be made
for a star observed once).  Residuals are in % of the continuum.</p>
{_markdown_table(validation.get("table", ""))}
<ul>{notes}</ul>"""


def render(info: dict[str, Any], rd_id: str, validation: dict[str, Any] | None = None) -> str:
    """HTML of the separation model's card.

    Parameters
    ----------
    info : dict
        ``models/separation/model.json``: the checkpoint's description
        (:class:`harps_data.records.CheckpointInfo` fields) plus ``model_id``,
        ``sha256``, ``telluric_templates``, ``source``, ``published``.
    rd_id : str
    validation : dict, optional
        ``bench/telluric.py``'s JSON (``table``, ``notes``, ``command``).

    Long because it is the page's template.
    """
    schema = schema_of(rd_id)
    tc = info.get("train_config", {})
    grid = info.get("grid", {})
    details = table_html([(k, escape(str(v))) for k, v in (
        ("model id", info.get("model_id")), ("checkpoint SHA-256", info.get("sha256")),
        ("preset", info.get("preset")),
        ("grid", f"{grid.get('wave_min')}-{grid.get('wave_max')} A, step "
                 f"{grid.get('step')} A, barycentric air wavelengths"),
        ("star", f"autoencoder, conv {info.get('conv_channels')}, fc "
                 f"{info.get('fc_hidden')}, latent {info.get('latent_dim')}"),
        ("atmosphere", f"{info.get('telluric_templates')} optical-depth templates in the "
                       "observatory frame, per-spectrum amplitudes"),
        ("parameters", info.get("n_parameters")),
        ("training", f"{info.get('step')} steps of batch {tc.get('batch_size')}, seed "
                     f"{tc.get('seed')}, velocity whitening +-{tc.get('velocity_whitening')} "
                     f"km/s, template L1 {tc.get('telluric_l1')}, sampling "
                     f"{tc.get('sampling')}"),
        ("data", f"{info.get('n_train')} training and {info.get('n_val')} validation "
                 f"spectra ({info.get('n_stars_train')} / {info.get('n_stars_val')} stars), "
                 f"file list SHA-256 {info.get('file_list_sha256')}"),
        ("code", ", ".join(f"{k} {v}" for k, v in (info.get("code") or {}).items())),
        ("published", info.get("published")))])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Separation model card: {escape(str(info.get('model_id')))}</title>
<style>body{{font-family:sans-serif;max-width:62em;margin:2em auto;line-height:1.4}}
th{{text-align:left;vertical-align:top;padding-right:1em}} td{{padding:0 .6em}}
code{{font-size:90%}}</style></head><body>
<h1>Stellar / telluric separation: <code>{escape(str(info.get('model_id')))}</code></h1>
<h2>Model details</h2>{details}
<h2>What it does</h2>
<p>Each spectrum is modelled as the star, decoded by an autoencoder in the barycentric
frame, times the transmission of Earth's atmosphere, <code>T = exp(-sum a_k tau_k)</code>,
whose optical-depth templates <code>tau_k</code> are fixed in the observatory frame and
shifted by the spectrum's BERV.  Everything is learned from this archive without labels:
the templates are what stays put in the observatory frame while the stars move with BERV
(and with random extra velocities added in training, "velocity whitening").  The products
of every public spectrum, through its DataLink document: the telluric-free spectrum
(observed flux divided by <code>T</code>: the data's own detail and noise; the model's
smooth stellar reconstruction beside it) and the transmission, both with a per-pixel
confidence (0 in masked pixels; reduced where <code>T</code> is below 0.7, where the photon
S/N is below 20 and where the model does not explain a telluric line).
<code>{schema}.separation</code> gives per-spectrum figures to filter on.</p>
{_validation(validation)}
<h2>Limitations</h2>
<ul><li>The products are on the model's 0.1 A grid, not the archive's 0.01 A pixels:
single telluric lines are resolved, their cores are not.</li>
<li>Nearly black lines (the O2 B band head) cannot be corrected: there the confidence
is 0.</li>
<li>Telluric absorption is modelled only in the telluric bands (5880-6010, 6270-6335,
6455-6620 and 6860-6913 A, +-5 A), and not within 4 A of H alpha and 3 A of Na D (every
star's strong lines there would leak into the templates); the weak water lines outside
(below ~2 % at La Silla) stay in the stellar product.</li>
<li>The demo's synthetic archive has its own, simulated water lines; on real spectra
the model knows the real atmosphere only from the real files it was trained with.</li>
</ul></body></html>
"""
