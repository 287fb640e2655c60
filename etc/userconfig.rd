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
      Spectra taken at high airmass and large |BERV|, where telluric lines
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
  </STREAM>
</resource>
