<?xml version="1.0" encoding="utf-8"?>
<!-- HARPS 1D spectra: SSA, TAP/ObsCore, DataLink/SODA with SDM output,
previews, and a browser form.

Order: resource metadata, tables, data, services, regression tests.
Inline code only calls helpers in res/ (python longer than a line lives
there): res/harps_service/ rows, manifest, latentrows, modelrows (grammars),
datalink (the steps of the datalink services: embargo gate, original file,
BAND, FORMAT, previews, in front of and after DaCHS's stock SDM procedures),
access (the embargo rule), spectra (SDM rows, originals, previews), params
(checks of request parameters), webfixes and hardening (DaCHS corrections),
latent_udf (ADQL functions), rdcode (what LOOPs call); res/harps_data/ the
HARPS facts and FITS reader; res/harps_site.py the deployment facts.  Files
enter the archive tree (data/) only through harps-ingest
(res/harps_service/ingest.py), which validates them first.
-->
<resource schema="harps" resdir=".">
  <meta name="creationDate">2026-11-21T12:00:00Z</meta>
  <meta name="title">HARPS 1D Spectra (ESO Phase 3 and DRS s1d)</meta>
  <meta name="description" format="rst">
    One-dimensional spectra from HARPS, the High Accuracy Radial velocity
    Planet Searcher at the ESO 3.6 m telescope on La Silla (R = 115,000,
    378-691 nm, air wavelengths in the barycentric frame).  The collection
    holds ESO Phase 3 science products ("ADP" files) and HARPS pipeline
    (DRS) s1d files with their observing metadata: target, signal-to-noise
    ratio, barycentric Earth radial velocity (BERV), airmass, ESO programme,
    exposure time, pipeline version, and the end of the one-year proprietary
    period.

    Spectra are available as IVOA Spectral Data Model VOTables or FITS
    tables through DataLink/SODA (with wavelength cutouts), as the original
    archive files, and as PNG previews.  Proprietary spectra are listed with
    their metadata but their data are served only to members of the owning
    programme.

    Files flagged ``synthetic`` come from a physically motivated simulator
    (harps_synth) used to demonstrate and test this service; they are not ESO
    products.
  </meta>
  <meta name="subject">spectroscopy</meta>
  <meta name="subject">high-resolution-spectroscopy</meta>
  <meta name="subject">radial-velocity</meta>
  <meta name="subject">stellar-atmospheres</meta>

  <meta name="creator">ESO HARPS team</meta>
  <meta name="creator">HARPS-VO developers</meta>
  <meta name="instrument">HARPS</meta>
  <meta name="facility">ESO La Silla 3.6m telescope</meta>
  <meta name="source">2003Msngr.114...20M</meta>
  <meta name="contentLevel">Research</meta>
  <meta name="type">Archive</meta>
  <meta name="coverage.waveband">Optical</meta>
  <meta name="ssap.dataSource">pointed</meta>
  <meta name="ssap.creationType">archival</meta>
  <meta name="productType">spectrum</meta>
  <meta name="ssap.testQuery">MAXREC=1</meta>
  <meta name="copyright">HARPS data: ESO Data Access Policy; please acknowledge
    ESO and cite Mayor et al. 2003, Msngr 114, 20.</meta>

  <meta name="_longdoc" format="rst">
    Usage hints
    ===========

    * Every spectrum has one row in ``harps.data`` (SSA and TAP) and in
      ``ivoa.obscore``.  Spectral coordinates in SSA/ObsCore columns are in
      metres, as the standards require; the spectra themselves are in
      Angstrom (air, barycentric).
    * ``berv`` is the barycentric Earth radial velocity applied by the
      pipeline (lambda_bary = lambda_topo (1 + BERV/c)): telluric lines and
      the CCD gap sit at +BERV in these barycentric spectra.
    * ``snr`` is the Phase 3 median S/N per pixel for ADP files and the
      pipeline S/N at order 50 for s1d files; ``sn50`` is always the latter.
    * Proprietary data: ``release_date`` in the future means that the data
      (downloads, datalink, cutouts, previews) require HTTP basic
      authentication by a member of the ESO programme ``prog_id``.
    * The CCD gap (5304.3-5337.3 Angstrom on the detector, shifted by +BERV)
      holds zeros, as in the files.
  </meta>

  <!-- ================================================================== -->
  <!-- Tables                                                             -->

  <table id="raw_data" onDisk="True" adql="hidden"
      namePath="//ssap#instance" primary="product_id">
    <meta name="description">Per-file metadata of the HARPS 1D spectra
      (internal; users query harps.data).</meta>
    <!-- SSA columns that vary between files (definitions from //ssap) -->
    <LOOP listItems="ssa_dateObs ssa_dstitle ssa_targname ssa_length
        ssa_specres ssa_timeExt ssa_specstart ssa_specend ssa_snr
        ssa_creatorDID">
      <events>
        <column original="\item"/>
      </events>
    </LOOP>
    <column original="ssa_snr" verbLevel="1" tablehead="S/N"
      description="Signal-to-noise ratio: Phase 3 SNR (median S/N per pixel)
        for ADP files, pipeline S/N at order 50 for s1d files."/>

    <mixin>//products#table</mixin>
    <mixin>//ssap#plainlocation</mixin>
    <mixin>//ssap#simpleCoverage</mixin>
    <FEED source="//scs#splitPosIndex"
      long="degrees(long(ssa_location))"
      lat="degrees(lat(ssa_location))"/>

    <!-- HARPS-specific metadata; one line per column:
      name, type, unit, ucd, tablehead, verbLevel, description -->
    <LOOP>
      <csvItems>
name,type,unit,ucd,tablehead,verbLevel,description
product_id,text,,meta.id;meta.dataset,Product,1,"Archive-style product identifier: the ESO ARCFILE without .fits for ADP files, HARPS.&lt;DATE-OBS&gt;_s1d_A for pipeline s1d files."
file_layout,text,,meta.code.class,Layout,15,"File layout: ADP (ESO Phase 3 1D spectrum, one-row binary table) or S1D (HARPS DRS 1D image with linear wavelength solution)."
ra,double precision,deg,pos.eq.ra;meta.main,RA,1,"Right ascension of the fibre (ICRS/FK5 J2000), from the file header."
dec,double precision,deg,pos.eq.dec;meta.main,Dec,1,"Declination of the fibre (ICRS/FK5 J2000), from the file header."
mjd_obs,double precision,d,time.start;obs.exposure,Start,10,"Start of the exposure (MJD, UTC; FITS MJD-OBS)."
mjd_end,double precision,d,time.end;obs.exposure,End,20,"End of the exposure (MJD, UTC; FITS MJD-END, or MJD-OBS + EXPTIME)."
sn50,real,,stat.snr;em.opt.V,SN50,15,"Pipeline S/N per pixel at the centre of echelle order 50, near 550 nm (HIERARCH ESO DRS SPE EXT SN50)."
berv,double precision,km/s,spect.dopplerVeloc.opt;pos.barycenter,BERV,1,"Barycentric Earth radial velocity applied by the pipeline (HIERARCH ESO DRS BERV); the pipeline maps detector wavelengths with lambda_bary = lambda_topo (1 + BERV/c), so telluric lines appear shifted by +BERV in these barycentric spectra."
bjd,double precision,d,time.epoch;pos.barycenter,BJD,20,"Barycentric Julian date of the exposure (HIERARCH ESO DRS BJD)."
airmass,real,,obs.airMass,Airmass,1,"Mean airmass of the exposure (mean of HIERARCH ESO TEL AIRM START/END)."
prog_id,text,,meta.id;obs.proposal,Programme,1,"ESO programme identifier; members of this programme may access proprietary data."
drs_version,text,,meta.version;meta.software,DRS,15,"HARPS data reduction software version (HIERARCH ESO DRS VERSION or PROCSOFT)."
dpr_type,text,,meta.code.class;obs,DPR type,25,"Exposure type (HIERARCH ESO DPR TYPE, e.g. STAR,DARK,G2: fibre A on the star, fibre B dark, G2 cross-correlation mask)."
arcfile,text,,meta.id;meta.file,Archive file,25,"ESO archive file name (ARCFILE) where the header has one."
release_date,timestamp,,time.release,Public from,1,"Date the data become public: observation date plus the one-year ESO proprietary period.  Before that date only members of the programme prog_id may retrieve the data."
      </csvItems>
      <events>
        <column name="\name" type="\type" unit="\unit" ucd="\ucd"
          tablehead="\tablehead" verbLevel="\verbLevel"
          description="\description" required="False"/>
      </events>
    </LOOP>
    <column name="synthetic" type="smallint" required="True"
      ucd="meta.code" tablehead="Synthetic" verbLevel="15"
      description="1 for spectra made by the project's simulator (harps_synth),
        which are not ESO products; 0 for archive data."/>
    <column name="datalink" type="text"
      ucd="meta.ref.url"
      tablehead="Datalink"
      description="Link to the datalink document of this spectrum (SDM
        spectra, cutouts, original file, preview)."
      verbLevel="15" displayHint="type=url">
      <property name="targetType"
       >application/x-votable+xml;content=datalink</property>
      <property name="targetTitle">Datalink</property>
    </column>

    <index columns="ssa_targname"/>
    <index columns="mjd_obs"/>
    <index columns="prog_id"/>
  </table>

  <table id="data" onDisk="True" adql="True">
    <meta name="description">HARPS 1D spectra (ESO Phase 3 ADP and DRS s1d),
      one row per spectrum, with SSA metadata and HARPS observing metadata
      (S/N, BERV, airmass, programme, pipeline version, release date).</meta>
    <publish sets="ivo_managed"/>
    <meta name="_associatedDatalinkService">
      <meta name="serviceId">sdl</meta>
      <meta name="idColumn">ssa_pubDID</meta>
    </meta>

    <mixin
      sourcetable="raw_data"
      copiedcolumns="*"
      ssa_aperture="1/3600."
      ssa_fluxunit="'adu'"
      ssa_spectralunit="'Angstrom'"
      ssa_bandpass="'Optical'"
      ssa_collection="'HARPS'"
      ssa_fluxcalib="'UNCALIBRATED'"
      ssa_fluxucd="'phot.flux.density;em.wl;stat.uncalib'"
      ssa_speccalib="'ABSOLUTE'"
      ssa_spectralucd="'em.wl;obs.atmos'"
      ssa_targclass="'star'"
      ssa_targetpos="ssa_location"
      ssa_datasource="\+CASE WHEN synthetic=1 THEN 'artificial' ELSE 'pointed' END"
    >//ssap#view</mixin>

    <mixin
      calibLevel="2"
      coverage="ssa_region"
      sResolution="ssa_aperture"
      oUCD="ssa_fluxucd"
      emUCD="ssa_spectralucd"
      emResPower="ssa_specmid/ssa_specres"
      facilityName="'ESO-3.6'"
      releaseDate="release_date"
      >//obscore#publishSSAPMIXC</mixin>
  </table>

  <coverage>
    <updater sourceTable="data"/>
  </coverage>

  <table id="instance" onDisk="False">
    <meta name="description">One HARPS 1D spectrum in the IVOA Spectral
      Data Model: air wavelength (barycentric) and uncalibrated flux in adu
      as in the archive file; zeros in the CCD gap near 5304-5337
      Angstrom are kept as in the file.</meta>
    <mixin ssaTable="data"
      spectralDescription="Air wavelength in the barycentric frame"
      fluxDescription="Flux (uncalibrated, adu)"
      >//ssap#sdm-instance</mixin>
    <column name="flux_error" type="double precision"
      unit="adu" ucd="stat.error;phot.flux.density;em.wl"
      utype="spec:Spectrum.Data.FluxAxis.Accuracy.StatError"
      description="Statistical error of the flux (NaN where the archive file
        has none: real ADP files carry NaN, s1d files no error)"/>
  </table>


  <table id="recon_instance" onDisk="False">
    <meta name="description">What the learned model makes of one HARPS
      spectrum, in the IVOA Spectral Data Model: on the model's wavelength
      grid (air, barycentric), the observed flux as the model sees it
      (resampled), the model's reconstruction from the spectrum's latent
      mean vector, and the residual, all in adu (the spectrum's median flux
      times the normalised values); NaN where the model ignores a pixel.</meta>
    <mixin ssaTable="data"
      spectralDescription="Air wavelength in the barycentric frame (model grid)"
      fluxDescription="Reconstruction by the model (adu)"
      >//ssap#sdm-instance</mixin>
    <param name="model_id" type="text" ucd="meta.id;meta.software"
      description="The model that made the reconstruction (harps.models)."/>
    <param name="norm_scale" type="real" unit="adu" ucd="phot.flux.density;arith.ratio"
      description="Median flux of the spectrum's valid pixels, the model's normalisation."/>
    <column name="observed" type="double precision"
      unit="adu" ucd="phot.flux.density;em.wl;obs"
      description="Observed flux resampled onto the model grid (NaN where masked)."/>
    <column name="residual" type="double precision"
      unit="adu" ucd="stat.fit.residual;phot.flux.density"
      description="Observed minus reconstruction (NaN where masked); its mean square over
        valid pixels, in normalised units, is harps.latents.recon_error."/>
  </table>


  <!-- ================================================================== -->
  <!-- The learned latent layer (ml/; published by harps-latents)         -->

  <table id="latents" onDisk="True" adql="True" primary="ssa_pubdid">
    <meta name="description">Learned latent representation of every public
      HARPS spectrum: the mean vector of a variational autoencoder
      (conv + fully connected, after Sedaghat et al. 2021) trained without
      labels on this archive.  One row per spectrum, joinable with
      harps.data on ssa_pubdid.  The informative dimensions are also
      scalar columns z1, z2, ... (z1 the most informative, i.e. the largest
      spread over the archive) whose descriptions say which latent dimension
      they are and what they correlate with; knn holds them as a vector, in
      the same order, for gavo_latentdist (GiST-indexed k-nearest-neighbour
      search).  Spectra enter only once their data are
      public.</meta>
    <!-- load the ADQL functions and the UWS fixes into every process that
      reads this RD (the server workers preload it; async jobs import them
      through bin/gavo) -->
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.install_server_extensions()
      </codeItems>
      <events/>
    </LOOP>
    <column name="ssa_pubdid" type="text" required="True"
      ucd="meta.ref.ivoid" tablehead="P. DID" verbLevel="1"
      description="Publisher DID of the spectrum (harps.data.ssa_pubDID)."/>
    <column name="model_id" type="text" required="True"
      ucd="meta.id;meta.software" tablehead="Model" verbLevel="15"
      description="Identifier of the model that made this row (harps.models)."/>
    <column name="latent" type="real[]"
      ucd="stat.fit.param" tablehead="mu" verbLevel="25"
      description="Latent mean vector mu, all dimensions, in units of the
        N(0,1) prior; NULL if the spectrum could not be encoded."/>
    <column name="knn" type="real[]"
      ucd="stat.fit.param" tablehead="Informative mu" verbLevel="20"
      description="The informative dimensions of mu, in the order of the
        z1, z2, ... columns; the vector gavo_latentdist(knn, ...) compares."/>
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.informative_items(context.forRD)
      </codeItems>
      <events>
        <column name="\column" type="real" ucd="stat.fit.param"
          tablehead="\column (dim \dim)" verbLevel="1" description="\description"/>
      </events>
    </LOOP>
    <column name="recon_error" type="real"
      ucd="stat.fit.residual" tablehead="Anomaly" verbLevel="1"
      description="Reconstruction error: mean squared residual of the
        median-normalised spectrum decoded from mu, over valid pixels.  An
        anomaly score: large values mark spectra unlike the training set."/>
    <column name="encode_flags" type="integer" required="True"
      ucd="meta.code.qual" tablehead="Flags" verbLevel="20"
      description="Preprocessing flags (0: encoded; see encode_reason)."/>
    <column name="encode_reason" type="text"
      ucd="meta.note" tablehead="Why not encoded" verbLevel="20"
      description="Why the spectrum was not encoded (NULL if it was)."/>
    <column name="ckpt_sha256" type="text" required="True"
      ucd="meta.id;meta.file" tablehead="Checkpoint SHA-256" verbLevel="25"
      description="SHA-256 of the model checkpoint (downloadable from harps.models)."/>
    <column name="train_data" type="text" required="True"
      ucd="meta.note" tablehead="Training data" verbLevel="25"
      description="What the model was trained on."/>
    <column name="encoded" type="timestamp" required="True"
      ucd="time.processing" tablehead="Encoded" verbLevel="25"
      description="When this row was computed (UTC)."/>
    <column name="artefact" type="text" required="True"
      ucd="meta.ref.url;meta.file" tablehead="Artefact" verbLevel="30"
      description="The latents artefact (FITS, inputs-relative path) this row was imported from."/>
    <index columns="knn" name="latents_knn_cube" method="GIST"
      >cube(CAST(knn AS float8[]))</index>
  </table>

  <table id="neighbours" onDisk="True" adql="True">
    <meta name="description">The ten nearest neighbours of every encoded
      spectrum in the informative latent subspace (Euclidean distance of
      harps.latents.knn), precomputed for "more like this" joins.</meta>
    <column name="ssa_pubdid" type="text" required="True"
      ucd="meta.ref.ivoid" tablehead="P. DID" verbLevel="1"
      description="Publisher DID of the query spectrum."/>
    <column name="neighbour_rank" type="smallint" required="True"
      ucd="meta.number" tablehead="Rank" verbLevel="1"
      description="1 for the nearest neighbour, 2 for the next... (RANK is
        reserved in ADQL, hence the name)."/>
    <column name="neighbour_pubdid" type="text" required="True"
      ucd="meta.ref.ivoid" tablehead="Neighbour" verbLevel="1"
      description="Publisher DID of the neighbour."/>
    <column name="latent_distance" type="double precision" required="True"
      ucd="stat.fit.param" tablehead="Distance" verbLevel="1"
      description="Euclidean distance in the informative latent subspace
        (the value gavo_latentdist gives)."/>
    <column name="model_id" type="text" required="True"
      ucd="meta.id;meta.software" tablehead="Model" verbLevel="15"
      description="Model whose latents were compared."/>
    <index columns="ssa_pubdid"/>
  </table>

  <table id="tags" onDisk="True" adql="True" primary="ssa_pubdid">
    <meta name="description">Physical parameters of every encoded
      spectrum predicted from its latent vector (harps.latents): effective
      temperature, surface gravity, metallicity, v sin i and radial
      velocity, each with a per-spectrum uncertainty, and an out-of-domain
      flag for spectra unlike the labelled set the predictor learned from
      (far from it in latent space, or badly reconstructed): do not use the
      numbers of a flagged spectrum.  One row per row of harps.latents,
      joinable on ssa_pubdid.  The column descriptions quote the held-out
      validation; the label catalogue and its match are in every row.</meta>
    <column name="ssa_pubdid" type="text" required="True"
      ucd="meta.ref.ivoid" tablehead="P. DID" verbLevel="1"
      description="Publisher DID of the spectrum (harps.latents.ssa_pubdid)."/>
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.tag_items()
      </codeItems>
      <events>
        <column name="\name" type="real" unit="\unit" ucd="\ucd"
          verbLevel="1" description="\description"/>
      </events>
    </LOOP>
    <column name="ood" type="smallint" required="True"
      ucd="meta.code.qual" tablehead="OOD" verbLevel="1"
      description="1: out of domain (the predictions are not to be trusted);
        0: like the labelled training set."/>
    <column name="ood_score" type="real"
      ucd="stat.value" tablehead="OOD score" verbLevel="10"
      description="How far out of domain: the larger of (distance to the
        labelled set in latent space, reconstruction error), each divided by
        its 99th percentile over the training set; above 1 is flagged."/>
    <column name="ood_reason" type="text"
      ucd="meta.note" tablehead="Why OOD" verbLevel="10"
      description="Why the spectrum is out of domain (NULL when it is not)."/>
    <column name="model_id" type="text" required="True"
      ucd="meta.id;meta.software" tablehead="Model" verbLevel="15"
      description="The latent model (harps.models)."/>
    <column name="tagger" type="text" required="True"
      ucd="meta.id;meta.software" tablehead="Tagger" verbLevel="15"
      description="The predictor (its file is published with the model)."/>
    <column name="label_catalogue" type="text" required="True"
      ucd="meta.bib;meta.file" tablehead="Labels" verbLevel="25"
      description="The label catalogue the predictor was trained on, with its SHA-256."/>
    <column name="label_match" type="text" required="True"
      ucd="meta.note" tablehead="Match" verbLevel="25"
      description="How spectra were matched to the catalogue, and how many."/>
    <column name="artefact" type="text" required="True"
      ucd="meta.ref.url;meta.file" tablehead="Artefact" verbLevel="30"
      description="The tags artefact (FITS, inputs-relative path) of this row."/>
    <index columns="teff"/>
    <index columns="mh"/>
  </table>

  <table id="separation" onDisk="True" adql="True" primary="ssa_pubdid">
    <meta name="description">Stellar / telluric separation of every public
      spectrum, one row per spectrum: how much telluric absorption the
      separation model found and how well it explains it.  The separated
      spectra themselves are DataLink products of each spectrum (stellar
      spectrum with the tellurics divided out, telluric transmission, both
      with a per-pixel confidence).  The model (harps-train --preset
      telluric) multiplies the autoencoder's star, in the barycentric
      frame, by transmission templates fixed in the observatory frame and
      learned from this archive; its validation is on the model card.
      Filter on sep_excess and sep_confident before trusting a product.</meta>
    <column name="ssa_pubdid" type="text" required="True"
      ucd="meta.ref.ivoid" tablehead="P. DID" verbLevel="1"
      description="Publisher DID of the spectrum (harps.data.ssa_pubdid)."/>
    <column name="model_id" type="text" required="True"
      ucd="meta.id;meta.software" tablehead="Model" verbLevel="15"
      description="The separation model that made this row."/>
    <column name="tell_ew" type="real" unit="Angstrom"
      ucd="spect.line.eqWidth;phys.absorption" tablehead="Tell. EW" verbLevel="1"
      description="Equivalent width of all the telluric absorption the model
        found in the spectrum (integral of 1 - transmission over the valid
        pixels of the 0.1 Angstrom model grid): grows with airmass and water
        vapour."/>
    <column name="tell_max_depth" type="real" unit=""
      ucd="phys.absorption;arith.ratio" tablehead="Max depth" verbLevel="1"
      description="Largest telluric depth, 1 - transmission, on the model
        grid (the O2 B band is nearly black: close to 1 when it is
        covered)."/>
    <column name="sep_excess" type="real" unit=""
      ucd="stat.fit.residual;arith.ratio" tablehead="Excess" verbLevel="1"
      description="RMS misfit of the model (star times transmission) in
        pixels with telluric absorption (transmission below 0.95) over its
        RMS misfit in telluric-free pixels redder than 5000 Angstrom: about
        1 when the tellurics are explained as well as the star, larger when
        telluric residuals are left.  NULL with fewer than 10 pixels of
        either kind."/>
    <column name="sep_confident" type="real" unit=""
      ucd="stat.fit.goodness;arith.ratio" tablehead="Confident" verbLevel="1"
      description="Fraction of the valid pixels in the telluric bands
        (5880-6010, 6270-6335, 6455-6620 and 6860-6913 Angstrom) where the
        products' confidence is at least 0.5."/>
  </table>

  <table id="stellar_instance" onDisk="False">
    <meta name="description">A HARPS spectrum with the telluric absorption
      divided out, in the IVOA Spectral Data Model, on the separation
      model's wavelength grid (air, barycentric, 0.1 Angstrom): the
      observed flux resampled onto the grid divided by the model's
      telluric transmission, in adu; NaN where the model ignores a pixel
      (CCD gap, bad pixels, outside the spectrum).  Use it where the
      confidence column is high.</meta>
    <mixin ssaTable="data"
      spectralDescription="Air wavelength in the barycentric frame (separation model grid)"
      fluxDescription="Stellar flux, observed divided by the telluric transmission (adu)"
      >//ssap#sdm-instance</mixin>
    <param name="model_id" type="text" ucd="meta.id;meta.software"
      description="The separation model (harps.separation.model_id)."/>
    <column name="confidence" type="real" unit=""
      ucd="stat.weight" verbLevel="1"
      description="0..1: how far the separation can be trusted at this
        pixel; 0 where masked, low where the transmission is below 0.7,
        where the photon S/N is below 20, or where the model does not
        explain a telluric line (see the model card)."/>
    <column name="stellar_model" type="double precision"
      unit="adu" ucd="phot.flux.density;em.wl;meta.modelled"
      description="The model's own telluric-free reconstruction of the star
        (decoded from the spectrum's latent vector): smooth and only as
        good as the model; the flux column keeps the data."/>
    <column name="observed" type="double precision"
      unit="adu" ucd="phot.flux.density;em.wl;obs"
      description="Observed flux resampled onto the grid (NaN where masked)."/>
  </table>

  <table id="transmission_instance" onDisk="False">
    <meta name="description">The telluric transmission of Earth's
      atmosphere in one HARPS exposure, as the separation model found it,
      in the IVOA Spectral Data Model: observed flux over stellar flux, on
      the separation model's grid at the spectrum's barycentric air
      wavelengths (the lines sit at fixed wavelengths in the observatory
      frame, given in a column), dimensionless.</meta>
    <mixin ssaTable="data"
      spectralDescription="Air wavelength in the barycentric frame (separation model grid)"
      fluxDescription="Telluric transmission, observed over stellar flux (dimensionless)"
      fluxUCDOverride="phys.transmission"
      >//ssap#sdm-instance</mixin>
    <param name="model_id" type="text" ucd="meta.id;meta.software"
      description="The separation model (harps.separation.model_id)."/>
    <param name="berv" type="real" unit="km/s" ucd="spect.dopplerVeloc;pos.barycenter"
      description="Barycentric Earth radial velocity of the exposure: the
        observatory-frame wavelength is the spectral value / (1 + BERV/c)."/>
    <column name="confidence" type="real" unit=""
      ucd="stat.weight" verbLevel="1"
      description="0..1: how far the separation can be trusted at this
        pixel (as in the stellar product)."/>
    <column name="wave_obs" type="double precision" unit="Angstrom"
      ucd="em.wl;obs.atmos" verbLevel="1"
      description="The same wavelength in the observatory (topocentric)
        frame, where the telluric lines stay put from night to night."/>
  </table>

  <table id="retrieval_metrics" onDisk="True" adql="True">
    <meta name="description">How well "spectra like this one" works,
      measured: for the model's latent space (the informative dimensions,
      as gavo_latentdist compares them), a PCA of the same size and plain
      Euclidean distance on the normalised flux, the fraction of the k
      nearest neighbours that are the same star (precision at k), and the
      purity and completeness of the 10 nearest within 100 K in Teff,
      0.2 dex in logg and 0.1 dex in [M/H], on labelled synthetic spectra
      and on the real alpha Cen B spectra.</meta>
    <column name="model_id" type="text" required="True" ucd="meta.id;meta.software"
      tablehead="Model" verbLevel="1" description="The model."/>
    <column name="dataset" type="text" required="True" ucd="meta.dataset"
      tablehead="Dataset" verbLevel="1" description="The spectra the figure is
        measured on (synthetic held-out stars, or real: a star's name)."/>
    <column name="representation" type="text" required="True" ucd="meta.code"
      tablehead="Representation" verbLevel="1" description="latent (this model),
        pca (baseline of the same size) or flux (Euclidean on normalised flux)."/>
    <column name="metric" type="text" required="True" ucd="meta.id"
      tablehead="Metric" verbLevel="1" description="precision (same star),
        purity or completeness (label tolerances)."/>
    <column name="k" type="integer" required="True" ucd="meta.number"
      tablehead="k" verbLevel="1" description="Number of neighbours considered."/>
    <column name="fraction" type="real" required="True" unit="" ucd="stat.value"
      tablehead="Value" verbLevel="1" description="The metric's value, a fraction
        (0 to 1)."/>
    <column name="n_queries" type="integer" required="True" ucd="meta.number"
      tablehead="Queries" verbLevel="1" description="Query spectra averaged over."/>
  </table>

  <table id="latent_dims" onDisk="True" adql="True">
    <meta name="description">Which latent dimensions carry information:
      the median absolute deviation of mu over the archive (Sedaghat et al.
      2021's criterion) and the decoder response (RMS change of the decoded
      spectrum per prior sigma); both must pass.</meta>
    <column name="model_id" type="text" required="True" ucd="meta.id;meta.software"
      tablehead="Model" verbLevel="1" description="The model."/>
    <column name="dim" type="integer" required="True" ucd="meta.number"
      tablehead="Dim" verbLevel="1" description="Latent dimension (0-based)."/>
    <column name="mad" type="real" ucd="stat.stdev;stat.median" tablehead="MAD"
      verbLevel="1" description="Median absolute deviation of mu over the
        archive, in prior sigma."/>
    <column name="decoder_response" type="real" ucd="stat.value"
      tablehead="Response" verbLevel="1" description="Half the RMS
        difference of the spectra decoded at the median latent vector moved
        by -1 and +1 prior sigma along this dimension (normalised flux)."/>
    <column name="informative" type="smallint" required="True" ucd="meta.code"
      tablehead="Informative" verbLevel="1" description="1 if both criteria pass."/>
  </table>

  <table id="latent_mi" onDisk="True" adql="True">
    <meta name="description">Mutual information between each latent
      dimension (and, for comparison, each component of a PCA of the same
      size) and each label of the labelled synthetic archive, one spectrum
      per star.</meta>
    <column name="model_id" type="text" required="True" ucd="meta.id;meta.software"
      tablehead="Model" verbLevel="1" description="The model."/>
    <column name="basis" type="text" required="True" ucd="meta.code"
      tablehead="Basis" verbLevel="1" description="latent (the model's mu) or
        pca (baseline of the same size)."/>
    <column name="dim" type="integer" required="True" ucd="meta.number"
      tablehead="Dim" verbLevel="1" description="Dimension or component (0-based)."/>
    <column name="label" type="text" required="True" ucd="meta.id"
      tablehead="Label" verbLevel="1" description="Teff, logg, [M/H], vsini,
        RV, airmass, water vapour, S/N or BERV."/>
    <column name="mi_ksg" type="real" unit="" ucd="stat.value"
      tablehead="MI (KSG)" verbLevel="1" description="Mutual information,
        nats, Kraskov-Stoegbauer-Grassberger estimator (scikit-learn)."/>
    <column name="mi_hist" type="real" unit="" ucd="stat.value"
      tablehead="MI (hist)" verbLevel="1" description="Mutual information,
        nats, plug-in estimator on an equal-population 2D histogram."/>
  </table>

  <table id="models" onDisk="True" adql="True" primary="model_id">
    <meta name="description">The models behind harps.latents, each a
      downloadable, checksummed PyTorch checkpoint with a model card.</meta>
    <mixin>//products#table</mixin>
    <column name="model_id" type="text" required="True" ucd="meta.id;meta.software"
      tablehead="Model" verbLevel="1" description="Model identifier."/>
    <column name="created" type="timestamp" required="True" ucd="time.creation"
      tablehead="Created" verbLevel="1" description="When the model was published."/>
    <column name="preset" type="text" required="True" ucd="meta.code"
      tablehead="Preset" verbLevel="1" description="Architecture preset (ml.model)."/>
    <column name="latent_dim" type="integer" required="True" ucd="meta.number"
      tablehead="Latent dim" verbLevel="1" description="Size of the latent vector."/>
    <column name="n_informative" type="integer" required="True" ucd="meta.number"
      tablehead="Informative" verbLevel="1" description="Informative dimensions."/>
    <column name="n_parameters" type="bigint" required="True" ucd="meta.number"
      tablehead="Parameters" verbLevel="15" description="Trainable parameters."/>
    <column name="grid_step" type="real" unit="Angstrom" ucd="spect.binSize"
      tablehead="Grid step" verbLevel="15" description="Sampling of the model's
        wavelength grid (0.01 is HARPS's own)."/>
    <column name="train_data" type="text" required="True" ucd="meta.note"
      tablehead="Training data" verbLevel="1" description="What the model was trained on."/>
    <column name="n_train_spectra" type="integer" required="True" ucd="meta.number"
      tablehead="Training spectra" verbLevel="15" description="Spectra in the training split."/>
    <column name="ckpt_sha256" type="text" required="True" ucd="meta.id;meta.file"
      tablehead="SHA-256" verbLevel="1" description="SHA-256 of the checkpoint file."/>
    <column name="is_current" type="smallint" required="True" ucd="meta.code"
      tablehead="Current" verbLevel="1" description="1 for the model behind harps.latents."/>
  </table>

  <!-- ================================================================== -->
  <!-- Data                                                               -->

  <!-- The mapping from file metadata to rows, shared by the two ways rows
    come in: harps_service.rows.archive_row yields the column values, these
    rules add the products-table entry and the SSA location. -->
  <STREAM id="productRules">
    <rowfilter procDef="//products#define">
      <bind key="table">"\\schema.raw_data"</bind>
      <bind key="accref">@accref</bind>
      <bind key="path">"\\getConfig{web}{serverURL}/\\rdId/sdl/dlget?ID="+urllib.parse.quote_plus(getStandardPubDID(@accref))</bind>
      <!-- an SDM VOTable of 313k points is about 12 MB -->
      <bind key="fsize">12000000</bind>
      <bind key="mime">"application/x-votable+xml"</bind>
      <bind key="preview">"\\getConfig{web}{serverURL}/\\rdId/pv/dlget?ID="+urllib.parse.quote_plus(getStandardPubDID(@accref))</bind>
      <bind key="preview_mime">"image/png"</bind>
      <bind key="owner">@owner</bind>
      <bind key="embargo">@embargo</bind>
    </rowfilter>
  </STREAM>

  <STREAM id="makeRawData">
    <make table="raw_data">
      <rowmaker idmaps="*">
        <apply procDef="//ssap#fill-plainlocation">
          <bind key="ra">@ra</bind>
          <bind key="dec">@dec</bind>
          <bind key="aperture">1/3600.</bind>
        </apply>
        <map key="datalink">\\dlMetaURI{sdl}</map>
      </rowmaker>
    </make>
  </STREAM>

  <data id="import" updating="True">
    <!-- The archive tree: `dachs imp harps/q import` (re)builds the table
      from the files; files already in the table are skipped. -->
    <sources pattern="data/*/*/*.fits">
      <ignoreSources fromdb="select accref from \schema.raw_data"/>
    </sources>
    <customGrammar module="res/harps_service/rows">
      <FEED source="productRules"/>
    </customGrammar>
    <FEED source="makeRawData"/>
  </data>

  <data id="import_batch" updating="True" auto="False">
    <!-- What harps-ingest uses: one manifest per ingest run, holding the
      metadata its validation already parsed (so headers are read once);
      the manifest is its journal: written before any file is placed,
      removed last, and used by the next run to clean up after a killed
      one (harps_service.archive). -->
    <sources pattern="staging/*.jsonl"/>
    <customGrammar module="res/harps_service/manifest">
      <FEED source="productRules"/>
    </customGrammar>
    <FEED source="makeRawData"/>
  </data>

  <data id="make_view" auto="False">
    <make table="data"/>
  </data>

  <data id="build_spectrum" auto="False">
    <embeddedGrammar>
      <iterator>
        <setup imports="harps_service.spectra"/>
        <code>
          yield from spectra.iter_sdm_rows(self.sourceToken)
        </code>
      </iterator>
    </embeddedGrammar>
    <make table="instance">
      <parmaker>
        <apply procDef="//ssap#feedSSAToSDM"/>
      </parmaker>
    </make>
  </data>


  <data id="build_reconstruction" auto="False">
    <embeddedGrammar>
      <iterator>
        <setup imports="harps_service.datalink"/>
        <code>
          yield from datalink.iter_reconstruction_rows(self.sourceToken)
        </code>
      </iterator>
    </embeddedGrammar>
    <make table="recon_instance">
      <parmaker>
        <apply procDef="//ssap#feedSSAToSDM"/>
      </parmaker>
    </make>
  </data>


  <data id="build_stellar" auto="False">
    <embeddedGrammar>
      <iterator>
        <setup imports="harps_service.datalink"/>
        <code>
          yield from datalink.iter_reconstruction_rows(self.sourceToken)
        </code>
      </iterator>
    </embeddedGrammar>
    <make table="stellar_instance">
      <parmaker>
        <apply procDef="//ssap#feedSSAToSDM"/>
      </parmaker>
    </make>
  </data>

  <data id="build_transmission" auto="False">
    <embeddedGrammar>
      <iterator>
        <setup imports="harps_service.datalink"/>
        <code>
          yield from datalink.iter_reconstruction_rows(self.sourceToken)
        </code>
      </iterator>
    </embeddedGrammar>
    <make table="transmission_instance">
      <parmaker>
        <apply procDef="//ssap#feedSSAToSDM"/>
      </parmaker>
    </make>
  </data>

  <data id="import_separation" auto="False">
    <!-- every file of the published separation model, the table rebuilt -->
    <sources pattern="models/separation/separation*.csv"/>
    <csvGrammar/>
    <make table="separation">
      <rowmaker idmaps="*">
        <ignoreOn><keyMissing key="ssa_pubdid"/></ignoreOn>
      </rowmaker>
    </make>
  </data>

  <data id="create_latents" auto="False">
    <!-- (re)creates the empty latent tables when a new model is published -->
    <make table="latents"/>
    <make table="neighbours"/>
    <make table="tags"/>
    <make table="retrieval_metrics"/>
  </data>

  <data id="import_latents" auto="False" updating="True">
    <sources pattern="models/current/latents*.fits">
      <ignoreSources fromdb="select distinct artefact from \schema.latents"/>
    </sources>
    <customGrammar module="res/harps_service/latentrows"/>
    <make table="latents"/>
  </data>

  <data id="import_neighbours" auto="False">
    <sources pattern="models/current/neighbours.fits"/>
    <fitsTableGrammar/>
    <make table="neighbours"/>
  </data>

  <data id="create_tags" auto="False">
    <!-- (re)creates the tag and retrieval tables (harps-latents tags) -->
    <make table="tags"/>
    <make table="retrieval_metrics"/>
  </data>

  <data id="import_tags" auto="False" updating="True">
    <sources pattern="models/current/tags*.fits">
      <ignoreSources fromdb="select distinct artefact from \schema.tags"/>
    </sources>
    <customGrammar module="res/harps_service/tagrows"/>
    <make table="tags"/>
  </data>

  <data id="import_retrieval" auto="False">
    <sources pattern="models/current/retrieval_metrics.csv"/>
    <csvGrammar/>
    <make table="retrieval_metrics">
      <!-- "value" is reserved in ADQL -->
      <rowmaker idmaps="*">
        <map key="fraction">@value</map>
      </rowmaker>
    </make>
  </data>

  <data id="import_analysis" auto="False">
    <sources pattern="models/current/latent_dims.csv"/>
    <csvGrammar/>
    <make table="latent_dims"/>
  </data>

  <data id="import_mi" auto="False">
    <sources pattern="models/current/latent_mi.csv"/>
    <csvGrammar/>
    <make table="latent_mi"/>
  </data>

  <data id="import_models" auto="False">
    <sources pattern="models/*/model.json"/>
    <customGrammar module="res/harps_service/modelrows">
      <rowfilter procDef="//products#define">
        <bind key="table">"\schema.models"</bind>
        <bind key="accref">@ckpt_accref</bind>
        <bind key="path">@ckpt_accref</bind>
        <bind key="fsize">@ckpt_size</bind>
        <bind key="mime">"application/octet-stream"</bind>
        <bind key="preview">None</bind>
      </rowfilter>
    </customGrammar>
    <make table="models">
      <rowmaker idmaps="*"/>
    </make>
  </data>

  <!-- ================================================================== -->
  <!-- Services                                                           -->

  <!-- DaCHS's /getproduct and static renderers answer some hostile URLs
    with HTTP 500 or name server paths; harps_service.webfixes corrects
    them in the server, which preloads this RD -->
  <LOOP>
    <codeItems>
      from harps_service import rdcode
      yield from rdcode.install_web_fixes()
    </codeItems>
    <events/>
  </LOOP>

  <procDef type="descriptorGenerator" id="checked_sdm_genDesc">
    <doc>//soda#sdm_genDesc on harps.data behind a check of ID: IDs that
      cannot name a spectrum (empty, not UTF-8, control characters, file
      paths) get a UsageFault naming ID instead of DaCHS's internal errors
      (see harps_service.params).</doc>
    <setup imports="harps_service.params">
      <code>
        generate = params.checked_sdm_descriptors(parent, "\rdId#data")
      </code>
    </setup>
    <code>
      return generate(pubDID, args)
    </code>
  </procDef>

  <procDef type="dataFunction" id="embargo_gate">
    <doc>Refuses embargoed data to outsiders (DaCHS 2.7's datalink does not
      check); the first data function of sdl and pv, in front of DaCHS's
      stock SDM procedures (see harps_service.datalink).</doc>
    <setup imports="harps_service.datalink"/>
    <code>
      datalink.gate(descriptor)
    </code>
  </procDef>

  <procDef type="dataFunction" id="deliver_original">
    <doc>Hands the archive file out unchanged (skipping the SDM steps)
      when FORMAT asks for the original.</doc>
    <setup imports="harps_service.datalink"/>
    <code>
      datalink.deliver_original(descriptor, args)
    </code>
  </procDef>

  <service id="sdl" allowed="dlget,dlmeta">
    <meta name="title">HARPS Spectra Datalink and SODA Service</meta>
    <meta name="shortName">HARPS datalink</meta>
    <meta name="description">Datalink and SODA access to HARPS 1D spectra:
      SDM VOTable, FITS table, CSV or TSV serialisations with wavelength
      cutouts (BAND, in metres) and max(flux)=1 normalisation, the original
      archive file, and a preview.  Proprietary data need the credentials
      of a member of the owning programme.</meta>
    <!-- DaCHS does not expand macros in _example meta: the demo DID
      (the real ADP of IC 4651 No 9122) is put in when the RD is read -->
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.example_items()
      </codeItems>
      <events>
        <meta name="_example" title="Datalink document of a spectrum">
          The links for one spectrum (SDM serialisations, the original archive
          file, the preview and the SODA cutout interface) are in its datalink
          document: :dl-id:`\exampleDID`
        </meta>
        <meta name="_example" title="Cutout around H alpha as a FITS table">
          To retrieve 6553 to 6573 Angstrom of a spectrum as an SDM FITS table,
          pass BAND in metres and FORMAT: ``BAND=6.553e-7 6.573e-7``,
          ``FORMAT=application/fits`` together with
          :dl-id:`\exampleDID`
        </meta>
      </events>
    </LOOP>
    <datalinkCore>
      <descriptorGenerator procDef="checked_sdm_genDesc"/>
      <dataFunction procDef="embargo_gate"/>
      <dataFunction procDef="deliver_original"/>
      <dataFunction procDef="//soda#sdm_genData">
        <bind key="builder">"\rdId#build_spectrum"</bind>
      </dataFunction>
      <FEED source="//soda#sdm_plainfluxcalib"/>
      <metaMaker>
        <setup imports="harps_service.datalink"/>
        <code>
          yield datalink.band_key(descriptor)
        </code>
      </metaMaker>
      <dataFunction>
        <setup imports="harps_service.datalink"/>
        <code>
          datalink.apply_band(descriptor, args)
        </code>
      </dataFunction>
      <metaMaker>
        <setup imports="harps_service.datalink"/>
        <code>
          yield datalink.format_key()
        </code>
      </metaMaker>
      <metaMaker semantics="#this">
        <setup imports="harps_service.datalink"/>
        <code>
          yield datalink.original_link(descriptor, rd)
        </code>
      </metaMaker>
      <metaMaker semantics="#derivation">
        <setup imports="harps_service.datalink"/>
        <code>
          yield from datalink.reconstruction_links(descriptor, rd)
        </code>
      </metaMaker>
      <metaMaker semantics="#derivation">
        <setup imports="harps_service.datalink"/>
        <code>
          yield from datalink.separation_links(descriptor, rd)
        </code>
      </metaMaker>
      <dataFormatter>
        <setup imports="harps_service.datalink"/>
        <code>
          return datalink.format_response(descriptor, args)
        </code>
      </dataFormatter>
    </datalinkCore>
  </service>

  <service id="pv" allowed="dlget">
    <meta name="title">HARPS Spectrum Previews</meta>
    <meta name="shortName">HARPS previews</meta>
    <meta name="description">PNG quick-look plots of HARPS 1D spectra
      (flux envelope against air wavelength).  Proprietary spectra need the
      credentials of a member of the owning programme.</meta>
    <!-- as in sdl: the example DID is put in when the RD is read -->
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.example_items()
      </codeItems>
      <events>
        <meta name="_example" title="Preview of a spectrum">
          ``dlget?ID=`` with a publisher DID, e.g.
          :dl-id:`\exampleDID`,
          returns a 900x300 PNG; the SSA and ObsCore preview columns point here.
        </meta>
      </events>
    </LOOP>
    <datalinkCore>
      <descriptorGenerator procDef="checked_sdm_genDesc"/>
      <dataFunction procDef="embargo_gate"/>
      <dataFunction>
        <setup imports="harps_service.datalink"/>
        <code>
          datalink.preview(descriptor, rd)
        </code>
      </dataFunction>
      <dataFormatter>
        <code>
          return descriptor.data
        </code>
      </dataFormatter>
    </datalinkCore>
  </service>

  <service id="stellar" allowed="dlget,dlmeta">
    <meta name="title">HARPS Spectra with the Telluric Absorption Removed</meta>
    <meta name="shortName">HARPS tell.-free</meta>
    <meta name="description">The stellar spectrum of a HARPS exposure with
      Earth's atmospheric absorption (O2 and H2O lines) divided out: the
      observed flux on the separation model's 0.1 Angstrom grid
      (barycentric air wavelengths) divided by the telluric transmission
      the model found for that exposure, with a per-pixel confidence and
      the model's own reconstruction of the star, as an SDM spectrum
      (VOTable, FITS, CSV or TSV; BAND cutouts in metres).  The model
      (harps.separation, the model card) is trained without labels on
      this archive; its measured accuracy is on the model card.
      Proprietary spectra need the credentials of a member of the owning
      programme.</meta>
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.example_items()
      </codeItems>
      <events>
        <meta name="_example" title="A telluric-free spectrum">
          The datalink document of a spectrum links its telluric-free
          version with semantics ``#derivation``; directly, ``dlget?ID=``
          with the publisher DID, e.g. :dl-id:`\exampleDID`, returns it as
          an SDM VOTable, with ``BAND=6.27e-7 6.33e-7`` the O2 gamma band
          only.
        </meta>
      </events>
    </LOOP>
    <datalinkCore>
      <descriptorGenerator procDef="checked_sdm_genDesc"/>
      <dataFunction procDef="embargo_gate"/>
      <dataFunction>
        <setup imports="harps_service.datalink"/>
        <code>
          datalink.separation_product(descriptor, rd, "stellar")
        </code>
      </dataFunction>
      <metaMaker>
        <setup imports="harps_service.datalink"/>
        <code>
          yield datalink.band_key(descriptor)
        </code>
      </metaMaker>
      <dataFunction>
        <setup imports="harps_service.datalink"/>
        <code>
          datalink.apply_band(descriptor, args)
        </code>
      </dataFunction>
      <metaMaker>
        <setup imports="harps_service.datalink"/>
        <code>
          yield datalink.format_key()
        </code>
      </metaMaker>
      <dataFormatter>
        <setup imports="harps_service.datalink"/>
        <code>
          return datalink.format_response(descriptor, args)
        </code>
      </dataFormatter>
    </datalinkCore>
  </service>

  <service id="telluric" allowed="dlget,dlmeta">
    <meta name="title">Telluric Transmission of HARPS Exposures</meta>
    <meta name="shortName">HARPS telluric</meta>
    <meta name="description">The transmission of Earth's atmosphere (O2
      and H2O absorption) in a HARPS exposure, observed over stellar flux,
      as the separation model found it: on the model's 0.1 Angstrom grid at
      the spectrum's barycentric air wavelengths, with the observatory-frame
      wavelength (where the lines stay put) and a per-pixel confidence, as
      an SDM spectrum (VOTable, FITS, CSV or TSV; BAND cutouts in metres).
      Its measured accuracy is on the model card.  Proprietary spectra need
      the credentials of a member of the owning programme.</meta>
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.example_items()
      </codeItems>
      <events>
        <meta name="_example" title="The telluric transmission of an exposure">
          The datalink document of a spectrum links the transmission with
          semantics ``#derivation``; directly, ``dlget?ID=`` with the
          publisher DID, e.g. :dl-id:`\exampleDID`, returns it as an SDM
          VOTable, with ``BAND=6.86e-7 6.92e-7`` the O2 B band only.
        </meta>
      </events>
    </LOOP>
    <datalinkCore>
      <descriptorGenerator procDef="checked_sdm_genDesc"/>
      <dataFunction procDef="embargo_gate"/>
      <dataFunction>
        <setup imports="harps_service.datalink"/>
        <code>
          datalink.separation_product(descriptor, rd, "transmission")
        </code>
      </dataFunction>
      <metaMaker>
        <setup imports="harps_service.datalink"/>
        <code>
          yield datalink.band_key(descriptor)
        </code>
      </metaMaker>
      <dataFunction>
        <setup imports="harps_service.datalink"/>
        <code>
          datalink.apply_band(descriptor, args)
        </code>
      </dataFunction>
      <metaMaker>
        <setup imports="harps_service.datalink"/>
        <code>
          yield datalink.format_key()
        </code>
      </metaMaker>
      <dataFormatter>
        <setup imports="harps_service.datalink"/>
        <code>
          return datalink.format_response(descriptor, args)
        </code>
      </dataFormatter>
    </datalinkCore>
  </service>

  <service id="rec" allowed="dlget,dlmeta">
    <meta name="title">HARPS Spectra as Reconstructed by the Learned Model</meta>
    <meta name="shortName">HARPS reconstruct</meta>
    <meta name="description">What the learned latent model (see
      harps.models and the model card) makes of a HARPS spectrum: the
      observed flux on the model's wavelength grid, its reconstruction from
      the spectrum's latent mean vector and the residual, as an SDM
      spectrum (VOTable, FITS, CSV or TSV; BAND cutouts in metres).  The
      residual is what the anomaly score harps.latents.recon_error
      measures.  Computed on request by the model currently published;
      proprietary spectra need the credentials of a member of the owning
      programme.</meta>
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.example_items()
      </codeItems>
      <events>
        <meta name="_example" title="The reconstruction of a spectrum">
          The datalink document of a spectrum links its reconstruction with
          semantics ``#derivation``; directly, ``dlget?ID=`` with the
          publisher DID, e.g. :dl-id:`\exampleDID`, returns observed,
          reconstruction and residual in one SDM VOTable.
        </meta>
      </events>
    </LOOP>
    <datalinkCore>
      <descriptorGenerator procDef="checked_sdm_genDesc"/>
      <dataFunction procDef="embargo_gate"/>
      <dataFunction>
        <setup imports="harps_service.datalink"/>
        <code>
          datalink.reconstruction(descriptor, rd)
        </code>
      </dataFunction>
      <metaMaker>
        <setup imports="harps_service.datalink"/>
        <code>
          yield datalink.band_key(descriptor)
        </code>
      </metaMaker>
      <dataFunction>
        <setup imports="harps_service.datalink"/>
        <code>
          datalink.apply_band(descriptor, args)
        </code>
      </dataFunction>
      <metaMaker>
        <setup imports="harps_service.datalink"/>
        <code>
          yield datalink.format_key()
        </code>
      </metaMaker>
      <dataFormatter>
        <setup imports="harps_service.datalink"/>
        <code>
          return datalink.format_response(descriptor, args)
        </code>
      </dataFormatter>
    </datalinkCore>
  </service>

  <service id="decode" allowed="api">
    <meta name="title">HARPS Latent Space Decoder</meta>
    <meta name="shortName">HARPS decode</meta>
    <meta name="description">Decodes a point of the learned latent space
      into a spectrum: the spectrum the published model (harps.models)
      generates there, on its wavelength grid, normalised to a median of
      about 1.  Give a full latent vector (LATENT), or the informative
      coordinates z1, z2, ... (Z; the other dimensions from the archive's
      median), or a spectrum's publisher DID (ID), optionally moved by
      OFFSET (added to its z) or placed at Z; with ID the answer also holds
      the observed spectrum on the same grid and the decoded flux in adu.
      The answer names the model and gives the ADQL that finds the archived
      spectra nearest to that point.  RESPONSEFORMAT=json gives a compact
      JSON table (used by the Sliders page).</meta>
    <meta name="_example" title="The archive's typical spectrum">
      ``api`` alone decodes the archive's median latent vector; with
      ``RESPONSEFORMAT=json`` the answer is a compact JSON table.
    </meta>
    <!-- one number per informative dimension of the published model:
      written when the RD is read -->
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.latent_origin_items()
      </codeItems>
      <events>
        <meta name="_example" title="A point of the latent space">
          ``api?Z=\originCommas`` (one number per informative dimension,
          \nDims for the current model) decodes the origin of z1, z2, ...
          with the other dimensions at the archive median.
        </meta>
      </events>
    </LOOP>
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.example_items()
      </codeItems>
      <events>
        <meta name="_example" title="A spectrum moved along z1">
          ``api?ID=\exampleDID`` decodes the latent vector of that spectrum;
          add ``OFFSET=`` with one number per informative dimension (z1 first)
          to move it: compare columns ``flux`` and ``observed`` to see what
          each dimension changes.
        </meta>
      </events>
    </LOOP>
    <FEED source="//pql#DALIPars"/>
    <pythonCore>
      <inputTable>
        <inputKey name="ID" type="text" multiplicity="single"
          ucd="meta.ref.ivoid" description="Publisher DID of an encoded
          spectrum (harps.latents.ssa_pubdid) to start from."/>
        <inputKey name="OFFSET" type="text" multiplicity="single"
          description="Offsets added to the spectrum's informative
          coordinates z1, z2, ... (one number each, separated by commas or
          blanks; needs ID)."/>
        <inputKey name="Z" type="text" multiplicity="single"
          description="Informative coordinates z1, z2, ... to decode at (one
          number each); the other latent dimensions come from ID's spectrum
          or, without ID, from the archive median."/>
        <inputKey name="LATENT" type="text" multiplicity="single"
          description="A full latent vector (all dimensions of the model, in
          the order of harps.latents.latent), alone."/>
      </inputTable>
      <outputTable>
        <param name="model_id" type="text" ucd="meta.id;meta.software"
          description="The model that decoded (harps.models.model_id)."/>
        <param name="pubdid" type="text" ucd="meta.ref.ivoid"
          description="The spectrum started from (ID), if any."/>
        <param name="latent" type="text" ucd="stat.fit.param"
          description="The full latent vector decoded."/>
        <param name="knn" type="text" ucd="stat.fit.param"
          description="Its informative coordinates z1, z2, ..., as the second
          argument of gavo_latentdist."/>
        <param name="norm_scale" type="real" unit="adu"
          ucd="phot.flux.density;arith.ratio"
          description="Median flux of ID's spectrum (flux_adu = flux times this)."/>
        <param name="adql" type="text" ucd="meta.code"
          description="ADQL for the archived spectra nearest to this point."/>
        <param name="frame" type="text" ucd="meta.code"
          description="Wavelength frame of the model grid."/>
        <outputField name="wavelength" type="double precision" unit="Angstrom"
          ucd="em.wl" utype="spec:Spectrum.Data.SpectralAxis.Value"
          description="Air wavelength of the model grid (barycentric)."/>
        <outputField name="flux" type="real" unit=""
          ucd="phot.flux.density;em.wl;arith.ratio"
          utype="spec:Spectrum.Data.FluxAxis.Value"
          description="Decoded spectrum, normalised (median flux about 1)."/>
        <outputField name="flux_adu" type="real" unit="adu"
          ucd="phot.flux.density;em.wl"
          description="Decoded spectrum in adu, at ID's scale (NULL without ID)."/>
        <outputField name="observed" type="real" unit=""
          ucd="phot.flux.density;em.wl;arith.ratio;obs"
          description="ID's observed spectrum on the model grid, normalised
            like flux (NULL without ID and where the model ignores the pixel)."/>
      </outputTable>
      <coreProc>
        <setup imports="harps_service.modelapi"/>
        <code>
          return modelapi.decode(self, inputTable.args, queryMeta)
        </code>
      </coreProc>
    </pythonCore>
  </service>

  <service id="retrieve" allowed="api">
    <meta name="title">HARPS Retrieval by Example</meta>
    <meta name="shortName">HARPS retrieve</meta>
    <meta name="description">Finds the archived HARPS spectra most like a
      given one: an archived spectrum (ID, its publisher DID) or a 1D FITS
      spectrum of your own (SPECTRUM, uploaded by HTTP POST as
      multipart/form-data: an ESO Phase 3 ADP or DRS s1d file, or any FITS
      with a 1D image and a linear wavelength axis, or a table with WAVE and
      FLUX columns; at most 16 MiB, two uploads encoded at a time).  The
      spectrum is encoded by the published model and compared with the
      same indexed distance as ADQL's gavo_latentdist; only spectra you may
      read are returned.  Row 0 is the query, rows 1..K the neighbours by
      increasing distance, with links to their datalink documents and
      previews; SPECTRA=True adds each spectrum's normalised flux on the
      model grid.  Uploads are never stored.</meta>
    <meta name="_example" title="Spectra like an archived one">
      ``api?ID=`` with a publisher DID and ``K=5`` returns the five nearest
      other spectra (``gavo_latentdist`` in ADQL gives the same order).
    </meta>
    <meta name="_example" title="Spectra like your own file, from pyvo">
      Upload a FITS file by POST; in Python with requests and pyvo::

        import requests, pyvo
        from astropy.io.votable import parse_single_table
        import io
        r = requests.post(URL, data={"K": 10},
          files={"SPECTRUM": open("my_s1d_A.fits", "rb")})
        t = parse_single_table(io.BytesIO(r.content)).to_table()

      or ``pyvo.dal.DALResults.from_result_url`` on a GET with ``ID``.
    </meta>
    <FEED source="//pql#DALIPars"/>
    <pythonCore>
      <inputTable>
        <inputKey name="ID" type="text" multiplicity="single"
          ucd="meta.ref.ivoid" description="Publisher DID of an encoded
          spectrum (harps.latents.ssa_pubdid) to find neighbours of."/>
        <inputKey name="SPECTRUM" type="file"
          description="A 1D spectrum (FITS, at most 16 MiB) to find neighbours
          of, by HTTP POST (multipart/form-data); not stored."/>
        <inputKey name="K" type="integer" multiplicity="single"
          description="Number of neighbours (1 to 100, default 10).">
          <values min="1" max="100"/>
        </inputKey>
        <inputKey name="SPECTRA" type="boolean" multiplicity="single"
          description="Also return each spectrum's normalised flux on the model
          grid (default False).">
          <preparse>
            from harps_service.params import boolean_literal
            return boolean_literal(input, "SPECTRA")
          </preparse>
        </inputKey>
      </inputTable>
      <outputTable>
        <param name="model_id" type="text" ucd="meta.id;meta.software"
          description="The model that encoded (harps.models.model_id)."/>
        <param name="query" type="text" ucd="meta.id"
          description="The query: target name of ID or of the upload's header
            (its file name when the header has none)."/>
        <param name="latent" type="text" ucd="stat.fit.param"
          description="The query's full latent mean vector (for an upload:
            computed by the service, as harps-encode would)."/>
        <param name="knn" type="text" ucd="stat.fit.param"
          description="The query's informative coordinates z1, z2, ..."/>
        <param name="adql" type="text" ucd="meta.code"
          description="ADQL giving the same neighbours through TAP."/>
        <param name="grid_start" type="double precision" unit="Angstrom"
          ucd="em.wl;stat.min" description="First wavelength of the model grid."/>
        <param name="grid_step" type="double precision" unit="Angstrom"
          ucd="spect.binSize" description="Step of the model grid."/>
        <param name="grid_npix" type="integer" ucd="meta.number"
          description="Samples of the model grid (length of flux)."/>
        <outputField name="rank" type="smallint" ucd="meta.number" required="True"
          description="0 for the query, 1 for the nearest neighbour, ..."/>
        <outputField name="ssa_pubdid" type="text" ucd="meta.ref.ivoid"
          description="Publisher DID (NULL for an upload)."/>
        <outputField name="latent_distance" type="double precision" unit=""
          ucd="pos.distance;stat.fit.param"
          description="Euclidean distance to the query in the informative
            latent subspace (prior sigmas), as gavo_latentdist."/>
        <outputField name="ssa_targname" type="text" ucd="meta.id;src"
          description="Target name."/>
        <outputField name="ssa_dateobs" type="double precision" unit="d"
          ucd="time.epoch" description="Start of the observation (MJD)."/>
        <outputField name="ssa_snr" type="real" ucd="stat.snr"
          description="Signal-to-noise ratio of the spectrum."/>
        <outputField name="recon_error" type="real" unit=""
          ucd="stat.fit.residual"
          description="Reconstruction error (anomaly score) of the spectrum."/>
        <outputField name="datalink" type="text" ucd="meta.ref.url"
          description="Datalink document: SDM spectrum, cutouts, original,
            reconstruction."/>
        <outputField name="preview" type="text" ucd="meta.ref.url;meta.preview"
          description="PNG preview."/>
        <outputField name="flux" type="real[]" unit=""
          ucd="phot.flux.density;em.wl;arith.ratio"
          description="Normalised flux on the model grid (SPECTRA=True;
            NULL where the model ignores the pixel)."/>
      </outputTable>
      <coreProc>
        <setup imports="harps_service.modelapi"/>
        <code>
          return modelapi.retrieve(self, inputTable.args, queryMeta, service)
        </code>
      </coreProc>
    </pythonCore>
  </service>

  <service id="web" defaultRenderer="form">
    <meta name="shortName">HARPS web</meta>
    <meta name="title">HARPS 1D Spectra Browser Form</meta>
    <meta name="description">A web form to search the HARPS 1D spectra by
      position, date, target, S/N and programme, with links to their
      datalink documents (SDM spectra, cutouts, previews).</meta>
    <meta name="_example" title="Spectra of alpha Cen B">
      Choose HD128621 under Target (or search 219.87, -60.83 within 6
      arcmin) and submit: the rows link to each spectrum's datalink
      document.
    </meta>
    <dbCore queriedTable="data">
      <condDesc buildFrom="ssa_location"/>
      <condDesc buildFrom="ssa_dateObs"/>
      <condDesc>
        <inputKey original="data.ssa_targname" tablehead="Target">
          <values fromdb="ssa_targname from \schema.raw_data
            group by ssa_targname order by ssa_targname limit 2000"/>
        </inputKey>
      </condDesc>
      <condDesc buildFrom="ssa_snr"/>
      <condDesc buildFrom="prog_id"/>
    </dbCore>
    <outputTable>
      <autoCols>accref, ssa_targname, ssa_dateObs, ssa_snr, berv, airmass,
        prog_id, release_date, datalink</autoCols>
      <FEED source="//ssap#atomicCoords"/>
    </outputTable>
  </service>

  <service id="ssa" allowed="form,ssap.xml">
    <meta name="shortName">HARPS SSA</meta>
    <meta name="title">HARPS 1D Spectra SSA Service</meta>
    <meta name="ssap.complianceLevel">full</meta>
    <meta name="_example" title="Spectra near a position">
      All spectra within 0.1 degrees of alpha Cen B:
      :genparam:`POS(219.87,-60.83)` with :genparam:`SIZE(0.1)` and
      ``REQUEST=queryData``.
    </meta>
    <meta name="_example" title="Spectra of a target covering H alpha">
      ``REQUEST=queryData&amp;TARGETNAME=HD128621&amp;BAND=6.5e-7/6.6e-7``
      returns the alpha Cen B spectra whose wavelength range includes
      650-660 nm (BAND in metres).
    </meta>
    <meta name="_example" title="Metadata only">
      ``REQUEST=queryData&amp;FORMAT=METADATA`` describes the query
      parameters and the columns of the response.
    </meta>

    <publish render="ssap.xml" sets="ivo_managed"/>
    <publish render="form" sets="ivo_managed,local" service="web"/>

    <!-- DaCHS's MAXREC (//pql#DALIPars, which this replaces) with a range
      check: a negative MAXREC made DaCHS's SSA core fail with "list
      assignment index out of range", a huge one with an SQL error -->
    <inputKey name="maxrec" type="integer" tablehead="Match limit"
      description="Maximum number of records returned.  Pass 0 to
        retrieve service parameters."
      multiplicity="single" std="True">
      <property key="notForRenderer">form</property>
      <property key="std">1</property>
      <preparse>
        from harps_service.params import maxrec_literal
        return maxrec_literal(input)
      </preparse>
    </inputKey>

    <ssapCore queriedTable="data">
      <!-- a preview column (-> /getproduct?preview -> the pv service,
        which checks embargoes) for TOPCAT and Aladin -->
      <property key="previews">auto</property>
      <FEED source="//ssap#hcd_condDescs"/>
    </ssapCore>
  </service>

  <service id="explore" allowed="static">
    <meta name="title">HARPS Latent Explorer</meta>
    <meta name="shortName">HARPS explorer</meta>
    <meta name="description">A web page to browse HARPS spectra by what
      they look like: sliders over the informative latent coordinates
      (z1, z2, ...) with previews, and "more like this" from the
      precomputed nearest neighbours.  It only sends ADQL to this site's
      TAP service and shows every query it sends.</meta>
    <meta name="_example" title="The explorer">
      ``static/`` opens the page; ``static/explore.html`` is the same.
    </meta>
    <property name="staticData">web</property>
    <property name="indexFile">web/explore.html</property>
    <nullCore/>
  </service>

  <service id="model" allowed="static">
    <meta name="title">HARPS Latent Space Models</meta>
    <meta name="shortName">HARPS models</meta>
    <meta name="description">Model cards, checkpoints (PyTorch, with
      SHA-256 in harps.models), latents artefacts and the analysis of the
      models behind harps.latents.  The current model's card is at
      static/current/card.html.  Only public spectra are ever encoded, so
      everything here is public.</meta>
    <meta name="_example" title="The current model card">
      ``static/current/card.html`` describes the model behind
      :taptable:`harps.latents`: architecture, training data, what each
      informative dimension correlates with, and its limitations;
      ``static/current/model.ckpt`` is the checkpoint.
    </meta>
    <property name="staticData">models</property>
    <nullCore/>
  </service>

  <!-- ================================================================== -->
  <!-- Regression tests (dachs test harps/q); they use the real ADP file
    from the shared test data, which make demo ingests. -->

  <regSuite title="HARPS spectra regression" sequential="True">
    <regTest title="SSA queryData finds the real ADP by position">
      <url REQUEST="queryData" POS="261.21664,-49.94913" SIZE="0.01"
        >ssa/ssap.xml</url>
      <code>
        self.assertHasStrings("IC4651No9122", "HARPS_3.5", "076.C-0429(A)")
        self.assertHasStrings('name="QUERY_STATUS" value="OK"')
      </code>
    </regTest>

    <regTest title="SSA refuses a malformed POS with a VOTable error">
      <url REQUEST="queryData" POS="abc">ssa/ssap.xml</url>
      <code>
        self.assertHasStrings('value="ERROR"')
      </code>
    </regTest>

    <!-- the example product (harps_site.EXAMPLE_ACCREF), put in when the RD is read -->
    <LOOP>
      <codeItems>
        from harps_service import rdcode
        yield from rdcode.example_items()
      </codeItems>
      <events>
        <regTest title="Datalink metadata lists SDM, original file and preview">
          <url ID="\exampleAccref"
            >sdl/dlmeta</url>
          <code>
            self.assertHasStrings("#this", "#preview",
              "content=archive-original", "BAND")
          </code>
        </regTest>

        <regTest title="Datalink dlget returns the SDM VOTable of the ADP">
          <url ID="\exampleAccref"
            FORMAT="application/x-votable+xml;serialization=tabledata"
            BAND="6.56e-7 6.5601e-7">sdl/dlget</url>
          <code>
            self.assertHasStrings("spec:Spectrum", "IC4651No9122",
              "&lt;TD>6560.0", "&lt;TD>6560.01")
            self.assertLacksStrings("&lt;TD>6559.99")
          </code>
        </regTest>

        <regTest title="SODA cutout in FITS comes back as FITS">
          <url ID="\exampleAccref"
            FORMAT="application/fits" BAND="5.0e-7 5.001e-7">sdl/dlget</url>
          <code>
            self.assertEqual(self.data[:9], b"SIMPLE  =")
          </code>
        </regTest>
      </events>
    </LOOP>

    <regTest title="TAP sync sees the HARPS table">
      <url LANG="ADQL" REQUEST="doQuery" RESPONSEFORMAT="csv"
        QUERY="SELECT product_id, prog_id, drs_version FROM harps.data WHERE ssa_targname='IC4651No9122'"
        >/tap/sync</url>
      <code>
        self.assertHasStrings("ADP.2014-09-16T11:04:45.123",
          "076.C-0429(A)", "HARPS_3.5")
      </code>
    </regTest>

    <regTest title="ObsCore lists HARPS spectra">
      <url LANG="ADQL" REQUEST="doQuery" RESPONSEFORMAT="csv"
        QUERY="SELECT obs_collection, instrument_name, dataproduct_type, calib_level FROM ivoa.obscore WHERE obs_id LIKE 'harps/data/adp/2006/%'"
        >/tap/sync</url>
      <code>
        self.assertHasStrings("HARPS,HARPS,spectrum,2")
      </code>
    </regTest>
  </regSuite>
</resource>
