"""Normalizer tasks: a parser plugin on one raw file of a boefje run."""

from kat_scheduler.kinds.registry import Kind, register_kind
from kat_scheduler.models.tasks import NormalizerTask
from kat_scheduler.rankers.normalizer import NormalizerRanker

NORMALIZER = register_kind(Kind(name="normalizer", payload=NormalizerTask, ranker=NormalizerRanker.name,
                                task_name="tasks.handle_normalizer", celery_queue="normalizers",
                                plugin_path=("normalizer", "id")))
