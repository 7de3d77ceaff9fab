-- SMS encoding and segments (ccrm.sms_info): GSM 03.38 basic and extension
-- tables, 160/153, escape pairs never split; UCS-2 70/67, surrogate pairs
-- never split; the seed's figures and its Romanian text.
CREATE EXTENSION ccrm;
CREATE FUNCTION pg_temp.info(t text) RETURNS text LANGUAGE sql AS $$
    SELECT format('%s %s chars %s units %s segments', encoding, characters, units, segments) FROM ccrm.sms_info(t) $$;

-- the whole basic table is GSM-7, one septet each
SELECT pg_temp.info('@£$¥èéùìòÇ' || E'\n' || 'Øø' || E'\r' || 'ÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&''()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà');
-- the extension table: two septets each
SELECT pg_temp.info(E'\f^{}\\[~]|€');
SELECT c, (ccrm.sms_info(c)).units FROM unnest(ARRAY[E'\f', '^', '{', '}', '\', '[', '~', ']', '|', '€']) c;
-- not GSM: backtick, ç (GSM has only Ç), Romanian ă ș ț î â, Cyrillic, emoji
SELECT c, (ccrm.sms_info(c)).encoding FROM unnest(ARRAY['`', 'ç', 'ă', 'ș', 'ț', 'î', 'â', 'Ж', '😀']) c;
SELECT pg_temp.info('');

-- GSM-7 sizes: 160 is one segment, 161 two; parts of 153
SELECT n, pg_temp.info(repeat('a', n)) FROM unnest(ARRAY[1, 153, 159, 160, 161, 305, 306, 307, 308, 459, 460]) n;
-- extension characters: 158 + € = 160 septets is still one segment, 159 + € is not
SELECT pg_temp.info(repeat('a', 158) || '€');
SELECT pg_temp.info(repeat('a', 159) || '€');
-- an escape pair at a part boundary moves whole to the next part:
-- 152 + € fills part 1 with 152, so 152 + € + 152 needs three parts (306 septets)
SELECT pg_temp.info(repeat('a', 152) || '€' || repeat('a', 152));
SELECT pg_temp.info(repeat('a', 151) || '€' || repeat('a', 153));
SELECT pg_temp.info(repeat('€', 153));
SELECT pg_temp.info(repeat('€', 80));

-- UCS-2 sizes: 70 is one segment, 71 two; parts of 67
SELECT n, pg_temp.info(repeat('ș', n)) FROM unnest(ARRAY[1, 67, 70, 71, 133, 134, 135, 201, 202]) n;
-- one non-GSM character makes the whole text UCS-2
SELECT pg_temp.info(repeat('a', 69) || 'ă');
SELECT pg_temp.info(repeat('a', 70) || 'ă');
-- an emoji is a surrogate pair: two units, never split
SELECT pg_temp.info('😀');
SELECT pg_temp.info(repeat('a', 68) || '😀');
SELECT pg_temp.info(repeat('a', 69) || '😀');
SELECT pg_temp.info(repeat('a', 66) || '😀' || repeat('a', 66));
SELECT pg_temp.info(repeat('a', 65) || '😀' || repeat('a', 67));
SELECT pg_temp.info(repeat('😀', 67));

-- the seed: "An SMS can hold at most 160 characters (spaces included). A text
-- of 161 characters is charged twice. ... with diacritics at most 70."
SELECT pg_temp.info(rpad('Un SMS poate contine maximum 160 de caractere (inclusiv spatii).', 160, '.'));
SELECT pg_temp.info(rpad('Un SMS poate contine maximum 160 de caractere (inclusiv spatii).', 161, '.'));
SELECT pg_temp.info('Mesajele SMS nu vor fi transmise noaptea între 23:00 și 07:30.');
SELECT pg_temp.info(rpad('Dacă folosim diacritice: ă, ș, ț.', 70, '.'));
SELECT pg_temp.info(rpad('Dacă folosim diacritice: ă, ș, ț.', 71, '.'));

-- it is immutable, strict and parallel safe
SELECT provolatile, proisstrict, proparallel FROM pg_proc WHERE oid = 'ccrm.sms_info(text)'::regprocedure;
SELECT ccrm.sms_info(NULL) IS NULL AS null_in_null_out;

DROP EXTENSION ccrm;
