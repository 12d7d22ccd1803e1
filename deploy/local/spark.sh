#!/usr/bin/env bash
# Apache Spark as a reader of newsflow's Delta tables, for the tests and by
# hand: pyspark (local mode, in .venv-spark) with Delta Lake's and Hadoop's
# S3A jars from Maven Central.
#
#   spark.sh fetch   download the jars (cached)
#   spark.sh jars    fetch if needed, print them comma-separated (spark.jars)
#
# Why not `configure_spark_with_delta_pip`: it resolves the jars with Ivy at
# every session start, which needs the network each time and asks for the
# pip package's own version (4.4.1 is on PyPI, not on Maven Central here).
# The jars are cached outside the repository, in $NEWSFLOW_CACHE (default
# ~/.cache/newsflow), like the broker's.
set -euo pipefail

# The Delta release built for pyspark 4.2 (deploy/local/requirements-spark.txt)
# and the hadoop-aws of the Hadoop client pyspark 4.2 ships (3.5.0).
DELTA_VERSION="${DELTA_SPARK_VERSION:-4.4.0}"
HADOOP_VERSION="${SPARK_HADOOP_VERSION:-3.5.0}"
CACHE_DIR="${NEWSFLOW_CACHE:-$HOME/.cache/newsflow}"
LIB_DIR="$CACHE_DIR/spark-delta-$DELTA_VERSION-hadoop-$HADOOP_VERSION"

log() { printf '[spark] %s\n' "$*" >&2; }

resolve() { # artifact-coordinates output-dir
  local group="${1%%:*}" rest="${1#*:}"
  local artifact="${rest%%:*}" version="${rest#*:}"
  local work
  work="$(mktemp -d)"
  cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>newsflow.local</groupId>
  <artifactId>spark-readers</artifactId>
  <version>1</version>
  <dependencies>
    <dependency><groupId>$group</groupId><artifactId>$artifact</artifactId><version>$version</version></dependency>
  </dependencies>
</project>
POM
  mvn -q -B -f "$work/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$2" >&2
  rm -rf "$work"
}

fetch() {
  if [ -f "$LIB_DIR/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "mvn not found: install Maven (apt-get install maven)"; exit 1; }
  log "downloading Delta Lake $DELTA_VERSION and hadoop-aws $HADOOP_VERSION jars into $LIB_DIR"
  rm -rf "$LIB_DIR"
  mkdir -p "$LIB_DIR/all"
  resolve "io.delta:delta-spark_4.2_2.13:$DELTA_VERSION" "$LIB_DIR/all"
  resolve "org.apache.hadoop:hadoop-aws:$HADOOP_VERSION" "$LIB_DIR/all"
  # Only Delta's own jars and the S3A client with its AWS SDK: everything
  # else they depend on (Hadoop, Parquet, Jackson, Scala) is in pyspark in
  # the versions Spark was built with, and a second copy would clash.
  mkdir -p "$LIB_DIR/use"
  for jar in "$LIB_DIR"/all/delta-*.jar "$LIB_DIR"/all/hadoop-aws-*.jar \
             "$LIB_DIR"/all/bundle-*.jar "$LIB_DIR"/all/analyticsaccelerator-s3-*.jar; do
    mv "$jar" "$LIB_DIR/use/"
  done
  rm -rf "$LIB_DIR/all"
  touch "$LIB_DIR/.complete"
  log "jars cached: $(ls "$LIB_DIR/use" | wc -l) files"
}

case "${1:-}" in
  fetch) fetch ;;
  jars)
    fetch
    ls "$LIB_DIR"/use/*.jar | paste -sd, -
    ;;
  *)
    echo "usage: $0 fetch|jars" >&2
    exit 2
    ;;
esac
