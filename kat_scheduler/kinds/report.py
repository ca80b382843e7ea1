"""Report tasks: a report recipe of an organisation, made by Rocky's report runner.

Rocky schedules them (POST /schedules with scheduler_id "report"), the beat queues each due schedule
(schedulers/report.py) and the report runner pops them from the API; Celery runners get them as
`tasks.handle_report` on queue `reports`.
"""

from kat_scheduler.kinds.registry import Kind, register_kind
from kat_scheduler.models.inputs import Name, OrganisationId
from kat_scheduler.models.tasks import TaskPayload
from kat_scheduler.rankers.report import ReportRanker


class ReportTask(TaskPayload):
    """The payload of a report task, as Rocky sends it."""

    organisation_id: OrganisationId
    report_recipe_id: Name

    @property
    def identity(self) -> tuple[str | None, ...]:
        """The work: this recipe's report for this organisation."""
        return (self.report_recipe_id, self.organisation_id)

    @property
    def organization(self) -> str:
        return self.organisation_id

    @property
    def input_ooi(self) -> str | None:
        return None

    @property
    def plugin_id(self) -> str:
        return self.report_recipe_id


REPORT = register_kind(Kind(name="report", payload=ReportTask, ranker=ReportRanker.name,
                            task_name="tasks.handle_report", celery_queue="reports",
                            plugin_path=("report_recipe_id",)))
