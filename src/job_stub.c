/* Temporary: placeholders until the scheduler C lands (removed then). */
#include "postgres.h"
#include "fmgr.h"
#include "commands/trigger.h"
#define STUB(n) PG_FUNCTION_INFO_V1(n); Datum n(PG_FUNCTION_ARGS) { ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("%s is not built yet", #n))); PG_RETURN_NULL(); }
STUB(ccrm_next_runs)
STUB(ccrm_job_id)
STUB(ccrm_run_job)
STUB(ccrm_run_due_jobs)
STUB(ccrm_job_check_no_params)
STUB(ccrm_job_check_activities)
PG_FUNCTION_INFO_V1(ccrm_job_trigger);
Datum ccrm_job_trigger(PG_FUNCTION_ARGS) { TriggerData *t = (TriggerData *) fcinfo->context; return PointerGetDatum(TRIGGER_FIRED_FOR_ROW(t->tg_event) ? t->tg_trigtuple : NULL); }
