"""Package metadata and command-line entry points (tool config: pyproject.toml)."""

from setuptools import setup

setup(
    name="harps-vo",
    version="0.1.0",
    description="HARPS 1D spectra as a Virtual Observatory service with a learned latent layer",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # Two import roots (etc/dachsctl venv puts both on the venv's path with a
    # .pth; DaCHS gets resdir/res from etc/dachsctl deploy):
    #   .             ml (the learned layer, torch) and harps_synth (the synthetic archive)
    #   resdir/res    harps_site (deployment facts), harps_data (HARPS facts, FITS
    #                 reader, model records), harps_service (what runs in DaCHS and
    #                 the operator commands)
    packages=["ml", "harps_synth", "harps_data", "harps_service"],
    package_dir={"": "resdir/res", "ml": "ml", "harps_synth": "harps_synth"},
    py_modules=["harps_site"],
    # numpy, scipy and astropy come from Debian (the DaCHS server uses the same
    # copies); the rest is pinned in requirements.txt for the venv.
    install_requires=["numpy>=1.24", "astropy>=5.2"],
    extras_require={
        "ml": ["torch==2.13.0", "scikit-learn>=1.2", "tqdm>=4.60", "scipy>=1.10"],
        "test": ["pytest>=7.2", "pyvo>=1.4", "requests>=2.28"],
    },
    entry_points={
        "console_scripts": [
            "harps-ingest = harps_service.ingest:main",
            "harps-analyse = ml.analysis:main",
            "harps-latents = harps_service.latents:main",
            "harps-synth = harps_synth.cli:main",
            "harps-train = ml.train:main",
            "harps-encode = ml.encode:main",
            "harps-model-server = ml.serve:main",
            "harps-tags = ml.tags:main",
            "harps-retrieval = ml.retrieval:main",
            "harps-separate = ml.separate:main",
        ],
    },
)
