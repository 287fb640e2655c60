"""The model card: a static HTML page published next to each model's checkpoint.

It follows the usual model-card headings (model details, intended use,
training data, evaluation, limitations) with the facts from ``model.json``
(:class:`harps_data.records.ModelDescription`: the checkpoint's description
and the ``harps-analyse`` summary).
"""

from __future__ import annotations

import csv
import os
from html import escape

from harps_data.records import ModelDescription
from harps_site import schema_of

#: Validation figures shown for each tag, if the tagger reports them: key -> heading.
TAG_FIGURES = {"mae": "MAE", "rmse": "RMSE", "median_abs_error": "median |error|",
               "baseline_mae": "MAE of the mean", "within_1sigma": "within 1 sigma"}


def table_html(rows: list[tuple[str, str]]) -> str:
    """A two-column HTML table: escaped headings, values as given (HTML)."""
    return "<table>" + "".join(
        f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _mi_table(model: ModelDescription) -> str:
    best = model.analysis.best_mi_ksg
    knn = model.analysis.knn10_median_abs_error
    labels = list(best["latent"])
    head = "<tr><th></th>" + "".join(f"<th>{escape(lab)}</th>" for lab in labels) + "</tr>"
    rows = []
    for basis in best:
        rows.append(f"<tr><th>best MI, {basis} [nats]</th>" + "".join(
            f"<td>{best[basis][lab]:.2f}</td>" for lab in labels) + "</tr>")
    for basis in knn:
        rows.append(f"<tr><th>10-NN median |error|, {basis}</th>" + "".join(
            f"<td>{knn[basis][lab]:.3g}</td>" for lab in labels) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _details(model: ModelDescription) -> str:
    """The "Model details" table: identity, architecture, input, training, code."""
    t = model.training
    return table_html([
        ("Model id", f"<code>{escape(model.model_id)}</code>"),
        ("Checkpoint", f'<a href="model.ckpt">model.ckpt</a> (PyTorch), SHA-256 '
                       f'<code>{escape(model.ckpt_sha256)}</code>'),
        ("Architecture", escape(
            f"variational autoencoder, preset {t.preset}: {len(t.conv_channels)} strided "
            f"Conv1d layers {t.conv_channels}, fully connected {t.fc_hidden}, "
            f"latent size {t.latent_dim}, {t.n_parameters:,} parameters")),
        ("Input", escape(f"{t.grid['wave_min']}-{t.grid['wave_max']} A on a "
                         f"{t.grid_step} A grid ({t.grid['npix']} samples, padded to "
                         f"{t.grid['padded']}), {t.frame} frame; {t.normalisation}")),
        ("Training", escape(
            f"{t.step} steps, {t.epoch} epochs; "
            + ", ".join(f"{k}={v}" for k, v in t.train_config.items())
            + "; seeds " + ", ".join(f"{k}={v}" for k, v in t.seeds.items())
            + f"; final validation reconstruction {t.final_val_recon:.4g} "
            "(normalised flux squared)")),
        ("Code", escape(str(t.code))),
        ("Published", escape(model.created + " UTC")),
    ])


def _meaning(model: ModelDescription) -> str:
    """The "What the dimensions mean" section: criteria, the z columns, MI."""
    t, a = model.training, model.analysis
    dims = "".join(f"<li><code>{escape(d.column)}</code>: {escape(d.description)}</li>"
                   for d in model.informative)
    return f"""<h2>What the dimensions mean</h2>
<p>{a.n_informative} of {t.latent_dim} dimensions are informative (MAD of mu above
{a.criteria.mad_fraction:.0%} and decoder response above
{a.criteria.response_fraction:.0%} of the largest); the synthetic archive varies
{a.n_generative_parameters} generative parameters.  Mutual information and neighbour
errors are measured on {a.n_evaluation_stars} stars ({escape(a.evaluation)}), one
spectrum per star.</p>
<ul>{dims}</ul>
<p><img src="mi_heatmap.png" alt="mutual information heat map"></p>
{_mi_table(model)}"""


def _tags(model_dir: str | None, schema: str) -> str:
    """The "Physical-parameter tags" section from the tagger's validation.json."""
    from harps_service.tagrows import LABELS, validation
    val = validation(model_dir) if model_dir else {}
    labels = val.get("labels", {}) if isinstance(val.get("labels"), dict) else {}
    if not labels:
        return ""
    keys = [k for k in TAG_FIGURES if any(k in labels.get(lab.column, {}) for lab in LABELS)]
    head = "<tr><th>parameter</th>" + "".join(f"<th>{TAG_FIGURES[k]}</th>" for k in keys)
    rows = []
    for lab in LABELS:
        fig = labels.get(lab.column, {})
        cells = "".join(
            "<td>" + (f"{fig[k]:.0%}" if k == "within_1sigma" else f"{fig[k]:{lab.digits}}")
            + "</td>" if isinstance(fig.get(k), (int, float)) else "<td></td>" for k in keys)
        what = lab.what.removesuffix(", dex")
        rows.append(f"<tr><th>{escape(what)} [{escape(lab.unit or 'dex')}]</th>{cells}</tr>")
    other = {k: v for k, v in val.items() if k != "labels" and not isinstance(v, (dict, list))}
    notes = "; ".join(f"{escape(str(k))}: {escape(str(v))}" for k, v in other.items())
    return f"""<h2>Physical-parameter tags</h2>
<p>Every encoded spectrum has predicted Teff, logg, [M/H], v sin i and RV with a
per-spectrum uncertainty and an out-of-domain flag in <code>{schema}.tags</code>.
Validation on held-out synthetic stars (the predictor never saw them):</p>
<table>{head}</tr>{''.join(rows)}</table>
<p>{notes}</p>
<p>Real stars are unlike the synthetic training set in ways the simulator does not
model; check <code>ood</code> before using a number.</p>"""


def _retrieval(model_dir: str | None, schema: str) -> str:
    """The "Retrieval quality" section from retrieval_metrics.csv."""
    path = os.path.join(model_dir or "", "retrieval_metrics.csv")
    if not model_dir or not os.path.exists(path):
        return ""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    present = list(dict.fromkeys(r["representation"] for r in rows))
    reps = [r for r in ("latent", "pca", "flux") if r in present] + sorted(
        r for r in present if r not in ("latent", "pca", "flux"))
    keys = list(dict.fromkeys((r["dataset"], r["metric"], r["k"]) for r in rows))
    value = {(r["dataset"], r["metric"], r["k"], r["representation"]): r for r in rows}
    head = "<tr><th>dataset</th><th>metric</th><th>k</th>" + "".join(
        f"<th>{escape(rep)}</th>" for rep in reps) + "<th>queries</th></tr>"
    body = []
    for ds, metric, k in keys:
        cells = "".join(f"<td>{float(value[(ds, metric, k, rep)]['value']):.3f}</td>"
                        if (ds, metric, k, rep) in value else "<td></td>" for rep in reps)
        n = next((value[(ds, metric, k, rep)]["n_queries"] for rep in reps
                  if (ds, metric, k, rep) in value), "")
        body.append(f"<tr><td>{escape(ds)}</td><td>{escape(metric)}</td><td>{escape(k)}"
                    f"</td>{cells}<td>{escape(str(n))}</td></tr>")
    return f"""<h2>Retrieval quality</h2>
<p>What "similar" means here, measured (<code>{schema}.retrieval_metrics</code>):
precision is the fraction of the k nearest that are the same star; purity and
completeness count neighbours within 100 K (Teff), 0.2 dex (logg) and 0.1 dex ([M/H]).
<em>latent</em> is this model's informative subspace (what <code>gavo_latentdist</code>
compares), <em>pca</em> a PCA of the same size, <em>flux</em> Euclidean distance on the
normalised flux, <em>ideal</em> the ceiling (every other spectrum of the star ranked first:
a star with 3 spectra cannot reach precision 1 at k=5).</p>
<table>{head}{''.join(body)}</table>"""


def render(model: ModelDescription, rd_id: str, model_dir: str | os.PathLike | None = None
           ) -> str:
    """HTML of the model card for ``model`` (the contents of model.json).

    ``model_dir`` (the published model directory) adds the tags' validation
    and the retrieval metrics when they are there.

    Long because it is the page's template.
    """
    model_dir = os.fspath(model_dir) if model_dir is not None else None
    t = model.training
    schema = schema_of(rd_id)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Model card: {escape(model.model_id)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}}
th{{text-align:left;vertical-align:top;padding-right:1em}} td{{padding:0 .6em}}
code{{font-size:90%}}</style></head><body>
<h1>Model card: <code>{escape(model.model_id)}</code></h1>
<h2>Model details</h2>{_details(model)}
<h2>Intended use</h2>
<p>Similarity search, filtering and anomaly detection over HARPS 1D spectra in this
service: the latent mean vector of every public spectrum is in the TAP table
<code>{schema}.latents</code> (columns <code>z1, z2, ...</code> for the informative
dimensions, most informative first,
<code>recon_error</code> as an anomaly score), its ten nearest neighbours in
<code>{schema}.neighbours</code>, and <code>gavo_latentdist(knn, 'ivo://...')</code> ranks
spectra by latent distance in ADQL.  The dimensions are learned without labels; their
meaning below comes from the labelled synthetic archive.</p>
<h2>Training data</h2><p>{escape(model.train_data)}.  Training used
{t.n_train} spectra of {t.n_stars_train} stars, validation {t.n_val} spectra of
{t.n_stars_val} other stars (split by star, sampling weight 1/spectra per star);
{t.n_flagged} files were flagged by preprocessing and left out.  Proprietary spectra are
neither trained on nor encoded until their release date.</p>
{_meaning(model)}
<p>Full tables: <code>{schema}.latent_dims</code>, <code>{schema}.latent_mi</code>
(TAP), <a href="latent_mi.csv">latent_mi.csv</a>, <a href="analysis.json">analysis.json</a>.</p>
{_tags(model_dir, schema)}
{_retrieval(model_dir, schema)}
<h2>Limitations</h2>
<ul><li>Meanings are measured on synthetic spectra; real spectra carry effects the
simulator lacks (instrument drifts, emission, binaries), which the anomaly score may flag.</li>
<li>Latent distances compare informative dimensions in prior units; they are not
physical distances and depend on this model.</li>
<li>Models trained on small or coarse-grid archives (the demo) are illustrations, not
science-grade models.</li></ul>
</body></html>
"""
