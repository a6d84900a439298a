#!/bin/bash
#
# Fetch Omniglot and Mini-ImageNet into ./data, as the original supervised-reptile did, and
# verify what was built:
#   data/omniglot/<Alphabet>/characterNN/*.png           (all release zips merged)
#   data/omniglot_runs/runNN/...                         (Lake's 20 one-shot runs: all_runs.zip)
#   data/miniimagenet/{train,val,test}/<wnid>/*.JPEG
#
# Usage: ./fetch_data.sh [omniglot] [miniimagenet]          (no argument: both)
#        ./fetch_data.sh verify [omniglot] [miniimagenet]   (no argument: whichever data/ has)
# Settings (environment):
#   OMNIGLOT_URL           base URL, local folder or file:// URL holding <set>.zip
#   OMNIGLOT_SETS          release zips to merge (default: images_background images_evaluation)
#   OMNIGLOT_RUNS_URL      all_runs.zip: URL, file or file:// URL (default: in OMNIGLOT_URL when
#                          that is set, a mirror holding every zip; else the release's)
#   MINIIMAGENET_METADATA  the original's metadata/miniimagenet: URL (default: the original
#                          repository), or a local folder or file:// URL of {train,val,test}/<wnid>.csv
#   IMAGENET_TAR           local ILSVRC2012_img_train.tar to cut the images out of
#   IMAGENET_URL           where to download byte ranges of that tar from otherwise
#   FETCH_JOBS             Mini-ImageNet downloads at once (default: 16)
#
# Each dataset is verified before it is renamed into data/, so an existing data/<dataset> is
# always whole (re-runs skip it). Omniglot is built in a temporary folder that a failure or
# Ctrl-C removes; Mini-ImageNet in data/.miniimagenet.partial, which stays so that a re-run
# fetches only the images still missing. `verify` uses the same settings as a build.

set -euo pipefail

# Pinned commits: the files are those the project was checked against, whatever comes later.
OMNIGLOT_COMMIT=057f034baf2ecb8530bc5710e5a23584d2a519cc  # brendenlake/omniglot, 2019-02-13
METADATA_COMMIT=8f2b71c67a31c1a605ced0cecb76db876b607a7a  # openai/supervised-reptile, 2020-08-31
# github.com/<repo>/raw/ redirects to the file whether or not Git LFS stores it (for an LFS
# file, raw.githubusercontent.com serves only the pointer).
OMNIGLOT_RELEASE=https://github.com/brendenlake/omniglot/raw/$OMNIGLOT_COMMIT/python
RELEASE_SETS="images_background images_evaluation"

if [ -n "${OMNIGLOT_URL:-}" ]; then
    OMNIGLOT_RUNS_URL=${OMNIGLOT_RUNS_URL:-$OMNIGLOT_URL/all_runs.zip}
else
    OMNIGLOT_URL=$OMNIGLOT_RELEASE
    OMNIGLOT_RUNS_URL=${OMNIGLOT_RUNS_URL:-$OMNIGLOT_RELEASE/one-shot-classification/all_runs.zip}
fi
OMNIGLOT_SETS=${OMNIGLOT_SETS:-$RELEASE_SETS}
MINIIMAGENET_METADATA=${MINIIMAGENET_METADATA:-https://raw.githubusercontent.com/openai/supervised-reptile/$METADATA_COMMIT/metadata/miniimagenet}
IMAGENET_URL=${IMAGENET_URL:-http://www.image-net.org/challenges/LSVRC/2012/nnoupb/ILSVRC2012_img_train.tar}
FETCH_JOBS=${FETCH_JOBS:-16}
STAGING=data/.miniimagenet.partial
SPLITS="train val test"

# The release's alphabet and character counts are checked only when building the release.
full=
if [ "$OMNIGLOT_SETS" = "$RELEASE_SETS" ]; then full=--full; fi

die() { echo "fetch_data.sh: $*" >&2; exit 2; }

# A file:// URL is just a local path: copy from it instead of going through the network.
is_local() { [[ ${1#file://} != *://* ]]; }

# Checks and the Mini-ImageNet fetch are Python (supervised_reptile/fetch_data.py), run by the
# machine's python3 straight from this checkout.
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
run_python() { PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" python3 -m supervised_reptile.data.fetch "$@"; }

# --- Parse and check everything before touching data/, so bad input leaves no trace. ---
verify=0
if [ "${1:-}" = verify ]; then verify=1; shift; fi
folders=
for arg; do
    case $arg in
    omniglot) folders="$folders omniglot omniglot_runs" ;;
    miniimagenet) folders="$folders miniimagenet" ;;
    *) die "unknown argument '$arg'; use [verify] 'omniglot' and/or 'miniimagenet' (none: both)" ;;
    esac
done
if [ -z "$folders" ]; then
    for folder in omniglot omniglot_runs miniimagenet; do
        if [ $verify = 0 ] || [ -d "data/$folder" ]; then folders="$folders $folder"; fi
    done
    [ -n "$folders" ] || die "nothing to verify: no data/omniglot, data/omniglot_runs or data/miniimagenet here"
fi
command -v python3 > /dev/null || die "python3 is needed (to verify the data); install it"

uses() {  # whether this run reads the settings of data/$1: it verifies it, or builds it
    [[ " $folders " == *" $1 "* ]] && { [ $verify = 1 ] || [ ! -d "data/$1" ]; }
}
builds() { [ $verify = 0 ] && uses "$1"; }
if builds omniglot && is_local "$OMNIGLOT_URL"; then
    [ -d "${OMNIGLOT_URL#file://}" ] || die "OMNIGLOT_URL folder '${OMNIGLOT_URL#file://}' does not exist; set OMNIGLOT_URL to a folder holding the Omniglot zips"
    for name in $OMNIGLOT_SETS; do
        [ -f "${OMNIGLOT_URL#file://}/$name.zip" ] || die "'${OMNIGLOT_URL#file://}/$name.zip' not found; put it there or set OMNIGLOT_URL/OMNIGLOT_SETS to where the zips are"
    done
fi
if builds omniglot_runs && is_local "$OMNIGLOT_RUNS_URL"; then
    [ -f "${OMNIGLOT_RUNS_URL#file://}" ] || die "'${OMNIGLOT_RUNS_URL#file://}' not found; put all_runs.zip there or set OMNIGLOT_RUNS_URL to where it is"
fi
if builds miniimagenet; then
    [[ $FETCH_JOBS =~ ^[1-9][0-9]*$ ]] || die "FETCH_JOBS must be a number of downloads at once, not '$FETCH_JOBS'"
    if [ -n "${IMAGENET_TAR:-}" ]; then
        [ -f "$IMAGENET_TAR" ] || die "IMAGENET_TAR file '$IMAGENET_TAR' does not exist; point it at ILSVRC2012_img_train.tar or unset it to download"
    elif [[ $IMAGENET_URL != http://* && $IMAGENET_URL != https://* ]]; then
        die "IMAGENET_URL '$IMAGENET_URL' is not an http(s) URL; for a local ILSVRC2012_img_train.tar set IMAGENET_TAR"
    fi
fi
if uses miniimagenet && is_local "$MINIIMAGENET_METADATA"; then
    for split in $SPLITS; do
        compgen -G "${MINIIMAGENET_METADATA#file://}/$split/*.csv" > /dev/null ||
            die "no '${MINIIMAGENET_METADATA#file://}/$split/*.csv' found; point MINIIMAGENET_METADATA at a folder with {train,val,test}/<wnid>.csv or unset it"
    done
fi

verify_folder() {  # dataset, the folder holding it: print its counts; fail naming each problem
    run_python verify "$1" "$2" --label "data/$1" --metadata "$MINIIMAGENET_METADATA" $full
}

if [ $verify = 1 ]; then
    status=0
    for folder in $folders; do verify_folder "$folder" "data/$folder" || status=1; done
    exit $status
fi

mkdir -p data
tmp=$(mktemp -d data/.fetch.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM  # turn Ctrl-C into a normal exit so the EXIT trap cleans up

extract() {  # zip, folder, where the zip came from: unzip is not on every fresh machine, python3 is
    # Never a question (-o; stdin /dev/null: unzip asks "Continue? (y/n)" on a full disk), and
    # one line of ours instead of unzip's own lines and status.
    local status=0
    if command -v unzip > /dev/null; then
        unzip -o -qq "$1" -d "$2" < /dev/null > "$tmp/extract.log" 2>&1 || status=$?
    else
        python3 -m zipfile -e "$1" "$2" < /dev/null > "$tmp/extract.log" 2>&1 || status=$?
    fi
    case $status in
    0) ;;
    50) die "cannot extract $3: the disk is full; free some space and run again" ;;
    *) grep -qi 'no space left' "$tmp/extract.log" &&
           die "cannot extract $3: the disk is full; free some space and run again"
       die "cannot extract $3 (unzip exit status $status): the zip is damaged or incomplete; fetch it again" ;;
    esac
}

copy() {  # source, destination: one line, not cp's, when the disk is full
    cp -R "$1" "$2" 2> /dev/null || die "cannot copy into $(dirname "$2"): the disk is full or not writable; free some space and run again"
}

check_zip() {  # file, where it came from: a zip starts with PK\3\4; name what else a server sent
    local start
    LC_ALL=C IFS= read -r -n 4 start < "$1" || true
    [ "$start" != $'PK\x03\x04' ] || return 0
    IFS= read -r start < "$1" || true
    case $start in
    'version https://git-lfs'*) die "$2 is a Git LFS pointer, not the zip; use a URL that resolves LFS files (github.com/<owner>/<repo>/raw/<commit>/<path>)" ;;
    '<'*) die "$2 is an HTML page, not a zip; check the URL" ;;
    *) die "$2 is not a zip file" ;;
    esac
}

get_zip() {  # source (URL, file or file:// URL), destination, the variable that set the source
    if is_local "$1"; then
        copy "${1#file://}" "$2"
    else
        curl -fsSL --retry 3 "$1" -o "$2" ||
            die "download of $1 failed (curl exit status $?); check the network or set $3 to a local mirror"
    fi
    check_zip "$2" "$1"
}

install_verified() {  # dataset, folder: rename the folder into data/ only once it verifies
    echo "Verifying data/$1 ..."
    verify_folder "$1" "$2"
    mv "$2" "data/$1"
}

fetch_omniglot() {
    mkdir "$tmp/omniglot"
    for name in $OMNIGLOT_SETS; do
        echo "Fetching omniglot/$name ..."
        get_zip "$OMNIGLOT_URL/$name.zip" "$tmp/$name.zip" OMNIGLOT_URL
        echo "Extracting omniglot/$name ..."
        extract "$tmp/$name.zip" "$tmp/unzipped" "$OMNIGLOT_URL/$name.zip"
        # Merge rather than move: sets may share alphabets (identical files just overwrite).
        copy "$tmp/unzipped/$name/." "$tmp/omniglot/"
        rm -rf "$tmp/unzipped" "$tmp/$name.zip"
    done
    install_verified omniglot "$tmp/omniglot"
}

fetch_omniglot_runs() {
    echo "Fetching omniglot/all_runs ..."
    get_zip "$OMNIGLOT_RUNS_URL" "$tmp/all_runs.zip" OMNIGLOT_RUNS_URL
    extract "$tmp/all_runs.zip" "$tmp/omniglot_runs" "$OMNIGLOT_RUNS_URL"  # its own runNN/ folders
    install_verified omniglot_runs "$tmp/omniglot_runs"
}

fetch_miniimagenet() {
    # Fetches what the staging folder lacks, then verifies it (see fetch_data.py).
    mkdir -p "$STAGING"
    run_python fetch-miniimagenet "$STAGING" --metadata "$MINIIMAGENET_METADATA" \
        --tar "${IMAGENET_TAR:-}" --url "$IMAGENET_URL" --jobs "$FETCH_JOBS"
    mv "$STAGING" data/miniimagenet
    echo "Renamed $STAGING to data/miniimagenet"
}

for folder in $folders; do
    if [ -d "data/$folder" ]; then
        echo "data/$folder already exists; skipping (delete it to fetch again)"
    else
        "fetch_$folder"
    fi
done
