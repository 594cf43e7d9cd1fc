#!/usr/bin/env bash
# WordNet 3.0 for nltk, from Debian's wordnet-base and wordnet-sense-index packages (no PyPI package ships the
# data), so that the METEOR reward is also checked against nltk with real WordNet synonyms. Optional: without it
# that one test is skipped and METEOR uses exact and stem matching.
#   bash .ci/wordnet.sh DIR    then    export NLTK_DATA=DIR
set -euo pipefail
dest="$1/corpora/wordnet"
[ -f "$dest/lexnames" ] && exit 0
tmp=$(mktemp -d)
cd "$tmp"
apt-get download wordnet-base wordnet-sense-index >/dev/null 2>&1 \
  || { apt-get update -qq >/dev/null && apt-get download wordnet-base wordnet-sense-index >/dev/null; }
for f in ./*.deb; do dpkg -x "$f" extract; done
mkdir -p "$dest"
cp extract/usr/share/wordnet/* "$dest"/
# nltk also reads `lexnames` (the lexicographer file numbers, names and syntactic categories of WordNet 3.0's
# lexnames(5)), which the Debian packages do not install.
i=0
for name in adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body \
  noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive \
  noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation \
  noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication \
  verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception \
  verb.possession verb.social verb.stative verb.weather adj.ppl; do
  case "$name" in adj.all | adj.ppl) cat=3 ;; adj.pert) cat=3 ;; adv.*) cat=4 ;; noun.*) cat=1 ;; verb.*) cat=2 ;; esac
  printf '%02d\t%s\t%s\n' "$i" "$name" "$cat" >>"$dest/lexnames"
  i=$((i + 1))
done
rm -rf "$tmp"
