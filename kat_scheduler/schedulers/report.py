"""Report scheduling: Rocky gives each report recipe a schedule (a cron, or one deadline for a one-off
report); when it falls due the beat queues one report task for it, and moves the deadline to the
cron's next time, or clears it, so that a one-off report is made once."""

from __future__ import annotations

import logging

from pydantic import ValidationError

from kat_scheduler.kinds.report import ReportTask
from kat_scheduler.logging_setup import task_fields
from kat_scheduler.models import Schedule
from kat_scheduler.models.inputs import first_problem
from kat_scheduler.models.tasks import new_task_id
from kat_scheduler.queues import PushOutcome
from kat_scheduler.rankers import RankingContext
from kat_scheduler.repositories.schedules import from_ms
from kat_scheduler.schedulers.base import Scheduler, register
from kat_scheduler.schedulers.deadlines import next_cron, valid_cron

logger = logging.getLogger(__name__)


@register
class ReportScheduler(Scheduler):
    kind = "report"
    runs_schedules = True

    def run_due_schedules(self, limit: int) -> int:
        """Queue a report task for each of up to `limit` due schedules; returns how many were handled."""
        now_ms = self.now_ms()
        now = from_ms(now_ms)
        schedules = self.context.schedules[self.kind]
        due = schedules.due(now_ms, limit)
        score = self.ranker.rank(RankingContext(now_ms=now_ms))
        for schedule in due:
            self._queue(schedule, score)
            schedule.deadline_at = (next_cron(schedule.schedule, now)
                                    if schedule.schedule and valid_cron(schedule.schedule) else None)
            schedule.person_set = [name for name in schedule.person_set if name != "deadline_at"]  # it came
            schedule.modified_at = now
        schedules.save_many(due)
        return len(due)

    def _queue(self, schedule: Schedule, score: int) -> None:
        try:
            task = ReportTask.model_validate({**schedule.data, "id": new_task_id()})
        except ValidationError as error:
            logger.error("schedule %s organisation %s: its data is no report task (%s); skipped", schedule.id,
                         schedule.organisation, first_problem(error))
            return
        result = self.queue.push(task, score, schedule_id=schedule.id)
        fields = task_fields(result.task_id, self.kind, task.organization)
        if result.outcome is PushOutcome.QUEUED:
            logger.info("task %s organisation %s: report of recipe %s queued (schedule %s)", result.task_id,
                        task.organization, task.report_recipe_id, schedule.id, extra=fields)
        else:
            logger.info("task %s organisation %s: report of recipe %s not queued: %s", result.task_id,
                        task.organization, task.report_recipe_id, result.outcome.value, extra=fields)
