"""Reads the current footer of every article with Apache Spark (pyspark
with Delta Lake, local mode) and prints them as JSON:
{spec: {article_id: [confirming_sources, social_comments, forum_posts]}}.

    spark_readers.py JARS SPEC [SPEC ...]

JARS is the comma-separated list `deploy/local/spark.sh jars` prints. A
SPEC is a lake's root, optionally with `@VERSION` to read the
`article_totals` table as of that log version (Delta time travel), e.g. the
version before a compaction. One Spark session reads them all, since
starting one takes seconds. The footer is deploy/sql/article_footer.sql,
the view analysts use. For s3:// the AWS_* variables of the environment
apply (S3A, path-style, as an S3-compatible server needs).
"""

import json
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

COUNTS = ["confirming_sources", "social_comments", "forum_posts"]
FOOTER_SQL = Path(__file__).resolve().parents[2] / "deploy" / "sql" / "article_footer.sql"


def session(jars: str) -> SparkSession:
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("newsflow-readers")
        .config("spark.jars", jars)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config(
            "spark.sql.catalog.spark_catalog",
            "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        )
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
    )
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        builder = (
            builder.config("spark.hadoop.fs.s3a.endpoint", endpoint)
            .config("spark.hadoop.fs.s3a.path.style.access", "true")
            .config(
                "spark.hadoop.fs.s3a.connection.ssl.enabled",
                str(endpoint.startswith("https://")).lower(),
            )
            .config("spark.hadoop.fs.s3a.endpoint.region", os.environ.get("AWS_REGION", "us-east-1"))
            .config(
                "spark.hadoop.fs.s3a.aws.credentials.provider",
                "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider",
            )
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def footers(spark: SparkSession, spec: str) -> dict:
    root, _, version = spec.partition("@")
    root = root.rstrip("/")
    if root.startswith("s3://"):
        root = "s3a://" + root.removeprefix("s3://")
    reader = spark.read.format("delta")
    if version:
        reader = reader.option("versionAsOf", int(version))
    reader.load(f"{root}/article_totals").createOrReplaceTempView("article_totals")
    spark.sql(FOOTER_SQL.read_text().strip().rstrip(";"))
    rows = spark.sql(f"SELECT article_id, {', '.join(COUNTS)} FROM article_footer").collect()
    return {r["article_id"]: [int(r[c]) for c in COUNTS] for r in rows}


def main() -> None:
    jars, specs = sys.argv[1], sys.argv[2:]
    spark = session(jars)
    try:
        print(json.dumps({spec: footers(spark, spec) for spec in specs}))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
