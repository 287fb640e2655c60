"""The model card: a static HTML page published next to each model's checkpoint.

It follows the usual model-card headings (model details, intended use,
training data, evaluation, limitations) with the facts from ``model.json``
(:class:`harps_data.records.ModelDescription`: the checkpoint's description
and the ``harps-analyse`` summary).
"""

from __future__ import annotations

from html import escape

from harps_data.records import ModelDescription
from harps_site import schema_of


def _table(rows: list[tuple[str, str]]) -> str:
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
    return _table([
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


def render(model: ModelDescription, rd_id: str) -> str:
    """HTML of the model card for ``model`` (the contents of model.json)."""
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
<h2>Limitations</h2>
<ul><li>Meanings are measured on synthetic spectra; real spectra carry effects the
simulator lacks (instrument drifts, emission, binaries), which the anomaly score may flag.</li>
<li>Latent distances compare informative dimensions in prior units; they are not
physical distances and depend on this model.</li>
<li>Models trained on small or coarse-grid archives (the demo) are illustrations, not
science-grade models.</li></ul>
</body></html>
"""
