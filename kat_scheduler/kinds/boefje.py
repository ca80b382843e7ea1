"""Boefje tasks: a scanner plugin on an object, for an organisation."""

from kat_scheduler.kinds.registry import Kind, register_kind
from kat_scheduler.models.tasks import BoefjeTask
from kat_scheduler.rankers.boefje import BoefjeRanker

BOEFJE = register_kind(Kind(name="boefje", payload=BoefjeTask, ranker=BoefjeRanker.name,
                            task_name="tasks.handle_boefje", celery_queue="boefjes", plugin_path=("boefje", "id")))
