# Deployment facts for shell scripts and make, written by
#   python3 resdir/res/harps_site.py --shell > etc/site.sh
# from resdir/res/harps_site.py; do not edit (tests/test_layout.py checks it).
GAVO_ROOT=/var/gavo
INPUTS_DIR=/var/gavo/inputs
RES_NAME=harps
RD_ID=harps/q
DACHS_USER=dachsroot
DACHS_GROUP=gavo
DACHS_UI=--ui=stingy
EXAMPLE_ACCREF=harps/data/adp/2006/ADP.2014-09-16T11_04_45.123.fits
RUN_DIR=/run/harps-vo
MODEL_SOCKET=/run/harps-vo/model/model.sock
