#!/bin/sh
# Debian packages the end-to-end tests drive as real peers (see tests/README.md):
# sipp (sip-tester), ffmpeg, tshark/dumpcap, sox; and what checks deploy/ (tests/deploy):
# nft (nftables), kamailio, Debian's python3 with python3-yaml to parse the YAML files;
# and what builds and runs srs's image (tests/container): podman with runc, debootstrap and
# Debian's archive keyring for the base image (SRS_SKIP_CONTAINER=1 leaves them out).
# The codec tests' real encoders (tests/codecs/encoders.py) that neither ffmpeg nor PyAV's
# wheel has: bcg729 for G.729 and Annex B (GPL, so tests only), VisualOn's AMR-WB encoder.
# Rootful podman with host networking needs no uidmap, slirp4netns or fuse-overlayfs.
# Installed only when missing, and only when running as root; otherwise the tests that
# need them are skipped with a reason.
set -eu
missing=""
command -v sipp >/dev/null || missing="$missing sip-tester"
command -v ffmpeg >/dev/null || missing="$missing ffmpeg"
command -v tshark >/dev/null || missing="$missing tshark"
command -v sox >/dev/null || missing="$missing sox"
command -v gcc >/dev/null || missing="$missing gcc libc6-dev"
ldconfig -p | grep -q libbcg729.so.0 || missing="$missing libbcg729-0"
ldconfig -p | grep -q libvo-amrwbenc.so.0 || missing="$missing libvo-amrwbenc0"
command -v nft >/dev/null || missing="$missing nftables"
command -v kamailio >/dev/null || missing="$missing kamailio"
/usr/bin/python3 -c "import yaml" 2>/dev/null || missing="$missing python3-yaml"
if [ "${SRS_SKIP_CONTAINER:-0}" = 0 ]; then
    command -v podman >/dev/null || missing="$missing podman"
    command -v runc >/dev/null || missing="$missing runc"
    command -v debootstrap >/dev/null || missing="$missing debootstrap"
    [ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing="$missing debian-archive-keyring"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "not root or no apt-get: tests needing$missing will be skipped" >&2
    exit 0
fi
echo "installing test peers:$missing"
apt-get update -qq
# tshark asks whether non-root users may capture: answer no, without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
