<!-- Site-level DaCHS configuration for the HARPS service, installed as
/var/gavo/etc/userconfig.rd by etc/dachsctl.  DaCHS looks items up here
first and falls back to its built-in //userconfig.

* ObsCore gets the optional ObsCore 1.1 column obs_release_date, so that
  proprietary spectra are visible as such in ivoa.obscore.
* /tap/examples carries runnable example queries for the HARPS tables.
-->
<resource schema="__system">
  <STREAM id="obscore-extracolumns">
    <column name="obs_release_date" type="timestamp"
      ucd="time.release" utype="obscore:Curation.releaseDate"
      tablehead="Release" verbLevel="15" xtype="timestamp"
      description="Date the data become public; before, only members of the
        owning programme may retrieve them."/>
  </STREAM>

  <STREAM id="obscore-extrapars">
    <mixinPar key="releaseDate" description="SQL expression for the date
      the data become public (obs_release_date)">NULL</mixinPar>
  </STREAM>

  <STREAM id="obscore-extraevents">
    <property name="obscoreClause" cumulate="True">
      ,
      CAST(\\releaseDate AS timestamp) AS obs_release_date
    </property>
  </STREAM>

  <STREAM id="tapexamples">
    <meta name="_example" title="HARPS spectra of a star">
      All HARPS spectra of alpha Cen B (HD 128621) with their S/N, BERV and
      airmass, newest first, from :taptable:`harps.data`:

      .. tapquery::

        SELECT ssa_pubdid, product_id, mjd_obs, ssa_snr, berv, airmass, prog_id
        FROM harps.data
        WHERE ssa_targname = 'HD128621'
        ORDER BY mjd_obs DESC
    </meta>
    <meta name="_example" title="High-S/N spectra near a position">
      Spectra within 2 degrees of (261.2, -49.9) with S/N above 20, with
      their distance from that point:

      .. tapquery::

        SELECT ssa_targname, ssa_snr, mjd_obs,
          DISTANCE(ssa_location, POINT('ICRS', 261.2, -49.9)) AS dist
        FROM harps.data
        WHERE 1 = CONTAINS(ssa_location, CIRCLE('ICRS', 261.2, -49.9, 2))
          AND ssa_snr > 20
        ORDER BY dist
    </meta>
    <meta name="_example" title="Telluric-sensitive observations">
      Spectra taken at high airmass and large absolute BERV, where telluric lines
      are strongest and most displaced from the stellar rest frame:

      .. tapquery::

        SELECT TOP 100 product_id, ssa_targname, airmass, berv
        FROM harps.data
        WHERE airmass > 1.8 AND ABS(berv) > 20
        ORDER BY airmass DESC
    </meta>
    <meta name="_example" title="Proprietary spectra">
      Spectra whose proprietary period ends after a given date (ADQL has
      no current date: put today's date in).  Their metadata are public,
      their data need the credentials of a member of programme prog_id:

      .. tapquery::

        SELECT product_id, ssa_targname, prog_id, release_date
        FROM harps.data
        WHERE release_date > '2026-11-21'
        ORDER BY release_date
    </meta>
    <meta name="_example" title="HARPS in ObsCore">
      HARPS spectra through the ObsCore table :taptable:`ivoa.obscore`,
      with access URLs and release dates:

      .. tapquery::

        SELECT TOP 20 obs_publisher_did, target_name, t_min, em_min, em_max,
          access_url, obs_release_date
        FROM ivoa.obscore
        WHERE obs_collection = 'HARPS' AND em_min &lt; 6.563e-7 AND em_max &gt; 6.563e-7
    </meta>
    <meta name="_example" title="Observing statistics per programme">
      Number of spectra, targets and median S/N per ESO programme:

      .. tapquery::

        SELECT prog_id, COUNT(*) AS n_spectra,
          COUNT(DISTINCT ssa_targname) AS n_targets, AVG(ssa_snr) AS mean_snr
        FROM harps.data
        GROUP BY prog_id
        ORDER BY n_spectra DESC
    </meta>
    <!-- the example product (harps_site.EXAMPLE_ACCREF), put in when this is read -->
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.example_items()
      </codeItems>
      <events>
        <meta name="_example" title="Spectra that look like a given one">
          The ten spectra nearest to the real ADP of IC4651No9122 in the learned
          latent space of :taptable:`harps.latents`; ``gavo_latentdist`` is
          backed by a GiST k-nearest-neighbour index, so this is fast on any
          archive size.  The second argument can also be an explicit vector,
          one number per informative dimension in ``knn`` order
          (``'0.1 -0.4 ...'``):

          .. tapquery::

            SELECT TOP 10 l.ssa_pubdid, d.ssa_targname, d.ssa_snr,
              gavo_latentdist(l.knn,
                '\exampleDID'
              ) AS dist
            FROM harps.latents AS l JOIN harps.data AS d ON d.ssa_pubdid = l.ssa_pubdid
            ORDER BY dist
        </meta>
        <meta name="_example" title="Spectra most like a given one, with a similar Teff">
          Latent similarity and a physical cut together: the spectra nearest
          to the real ADP of IC4651No9122 whose predicted Teff is within
          100 K of its own (and not out of domain):

          .. tapquery::

            SELECT TOP 10 l.ssa_pubdid, d.ssa_targname, t.teff, t.teff_err,
              gavo_latentdist(l.knn, '\exampleDID') AS dist
            FROM harps.latents AS l
              JOIN harps.data AS d ON d.ssa_pubdid = l.ssa_pubdid
              JOIN harps.tags AS t ON t.ssa_pubdid = l.ssa_pubdid
              JOIN harps.tags AS q ON q.ssa_pubdid = '\exampleDID'
            WHERE t.ood = 0 AND ABS(t.teff - q.teff) &lt;= 100
            ORDER BY dist
        </meta>
      </events>
    </LOOP>
    <!-- the explicit-vector form needs one number per informative dimension
      of the published model: written when this is read, absent before the
      first model is published -->
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.latent_origin_items()
      </codeItems>
      <events>
        <meta name="_example" title="Spectra nearest a point in latent space">
          ``gavo_latentdist`` also takes an explicit vector, one number per
          informative dimension (\nDims for the current model, in the order
          of the columns z1, z2, ... of :taptable:`harps.latents`).  The
          origin is where the prior puts the most typical spectrum; change
          one number to walk along that dimension:

          .. tapquery::

            SELECT TOP 10 l.ssa_pubdid, d.ssa_targname, l.z1, l.z2,
              gavo_latentdist(l.knn, '\origin') AS dist
            FROM harps.latents AS l JOIN harps.data AS d ON d.ssa_pubdid = l.ssa_pubdid
            ORDER BY dist
        </meta>
      </events>
    </LOOP>
    <meta name="_example" title="More like this (precomputed neighbours)">
      Every encoded spectrum has its ten nearest neighbours in
      :taptable:`harps.neighbours`; join them to the SSA metadata, here for
      the spectra of one star:

      .. tapquery::

        SELECT n.ssa_pubdid AS query_did, n.neighbour_rank, d.ssa_targname AS neighbour,
          d.ssa_snr, n.latent_distance
        FROM harps.neighbours AS n
          JOIN harps.data AS d ON d.ssa_pubdid = n.neighbour_pubdid
          JOIN harps.data AS q ON q.ssa_pubdid = n.ssa_pubdid
        WHERE q.ssa_targname = 'IC4651No9122'
        ORDER BY query_did, neighbour_rank
    </meta>
    <meta name="_example" title="Unusual spectra">
      The reconstruction error of the autoencoder is an anomaly score:
      spectra unlike anything the model learned from come first:

      .. tapquery::

        SELECT TOP 20 l.ssa_pubdid, d.ssa_targname, d.ssa_snr, d.airmass, l.recon_error
        FROM harps.latents AS l JOIN harps.data AS d ON d.ssa_pubdid = l.ssa_pubdid
        WHERE l.encode_flags = 0
        ORDER BY recon_error DESC
    </meta>
    <meta name="_example" title="Filter and rank on latent coordinates">
      ``z1``, ``z2``, ... are the informative latent coordinates, most
      informative first; their descriptions (and :taptable:`harps.latent_mi`)
      say what they correlate with.  Plain ADQL selects and ranks on them,
      next to the usual metadata:

      .. tapquery::

        SELECT TOP 50 d.ssa_targname, d.ssa_snr, l.z1, l.z2
        FROM harps.latents AS l JOIN harps.data AS d ON d.ssa_pubdid = l.ssa_pubdid
        WHERE l.z1 > 0 AND d.ssa_snr > 50
        ORDER BY z2 DESC
    </meta>
    <meta name="_example" title="G dwarfs with [M/H] above 0.2">
      :taptable:`harps.tags` has Teff, logg, [M/H], v sin i and RV predicted
      from each spectrum's latent vector, with uncertainties and an
      out-of-domain flag (``ood = 1``: do not trust the numbers).  G dwarfs
      whose [M/H] may be above 0.2 (within one sigma), most metal-rich first;
      with a precise model, drop ``+ t.mh_err`` for a strict cut:

      .. tapquery::

        SELECT TOP 50 d.ssa_targname, d.ssa_snr, t.teff, t.teff_err, t.logg, t.mh, t.mh_err
        FROM harps.tags AS t JOIN harps.data AS d ON d.ssa_pubdid = t.ssa_pubdid
        WHERE t.ood = 0 AND t.teff BETWEEN 5300 AND 6000 AND t.logg > 4.0
          AND t.mh + t.mh_err > 0.2
        ORDER BY t.mh DESC
    </meta>
    <meta name="_example" title="How well retrieval works">
      What "spectra like this one" achieves, measured for this model against
      PCA and plain flux distance (:taptable:`harps.retrieval_metrics`):

      .. tapquery::

        SELECT dataset, metric, k, representation, fraction, n_queries
        FROM harps.retrieval_metrics
        ORDER BY dataset, metric, k, representation
    </meta>
    <meta name="_example" title="What the latent dimensions mean">
      Mutual information (nats) of every informative latent dimension with
      the labels of the synthetic archive, strongest first, next to the
      best PCA component for comparison:

      .. tapquery::

        SELECT m.basis, m.dim, m.label, m.mi_ksg, m.mi_hist
        FROM harps.latent_mi AS m
          JOIN harps.latent_dims AS d ON d.dim = m.dim AND d.model_id = m.model_id
        WHERE d.informative = 1 OR m.basis = 'pca'
        ORDER BY mi_ksg DESC
    </meta>
  </STREAM>
</resource>
