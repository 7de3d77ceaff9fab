/*
 * ccrm 0.6.0 -> 0.7.0
 *
 * C: sequence_due.c (when a step of a follow-up sequence is due).
 */
\echo Use "ALTER EXTENSION ccrm UPDATE TO '0.7.0'" to load this file. \quit

/* ------------------------------------------------------------------------
 * sequence_due.c — when a step of a follow-up sequence is due
 * ------------------------------------------------------------------------ */
CREATE FUNCTION ccrm.step_due_time(after timestamptz, delay_days integer, day_rule text DEFAULT 'any',
    not_before time DEFAULT NULL, time_zone text DEFAULT NULL, sms boolean DEFAULT false,
    country text DEFAULT NULL) RETURNS timestamptz
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ccrm_step_due_time';
COMMENT ON FUNCTION ccrm.step_due_time(timestamptz, integer, text, time, text, boolean, text) IS
    'when a sequence step is due: delay_days local days after after, then the first instant on a day the rule allows, not before not_before local time and, for SMS, outside quiet hours';
