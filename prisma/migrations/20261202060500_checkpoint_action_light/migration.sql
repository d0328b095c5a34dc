-- The action without its large fields (exclude=actionContent), written beside it at insert so a timeline
-- read does not parse every action: on the long-research trace (79 checkpoints, 1.9 MB of actions)
-- stripping them at read time cost ~21 ms of the list's 34 ms in Postgres. NULL when there is nothing to
-- leave out; reads strip a NULL one's action in JS too, so a row this backfill skips is still answered right.
ALTER TABLE "checkpoint" ADD COLUMN "action_light" JSON;

-- The fields are ACTION_CONTENT_FIELDS (src/modules/checkpoints/checkpoint-action.ts); an interactive tool's
-- args are its question, so that action stays whole. Postgres' JSON functions turn every string of a
-- value into text, which cannot hold U+0000 or a lone surrogate: actions with any such escape are skipped.
UPDATE "checkpoint" SET "action_light" = (
    SELECT json_object_agg(field.key, field.value) FROM json_each("action") AS field
    WHERE field.key <> ALL ('{content,text,newText,oldText,result,results,items,args}'::text[]))
  WHERE CASE -- in this order: the JSON functions are not run on an action they would fail on
    WHEN "action"::text ~ '\\u(0000|[dD][89a-fA-F])' THEN false
    WHEN json_typeof("action") <> 'object' OR ("action"->'type')::text = '"interactiveTool"' THEN false
    ELSE EXISTS (SELECT FROM json_object_keys("action") AS key
      WHERE key = ANY ('{content,text,newText,oldText,result,results,items,args}'::text[]))
  END;
