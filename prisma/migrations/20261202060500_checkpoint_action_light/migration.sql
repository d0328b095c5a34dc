-- The action without its large fields (exclude=actionContent), kept beside it so a timeline read does
-- not parse every action: on the long-research trace (79 checkpoints, 1.9 MB of actions) stripping them
-- at read time cost ~21 ms of the list's 34 ms in Postgres. NULL when there is nothing to leave out.
-- The field list is ACTION_CONTENT_FIELDS (src/modules/checkpoints/checkpoint-action.ts); an interactive
-- tool's args are its question, so that action is kept whole.
ALTER TABLE "checkpoint" ADD COLUMN "action_light" JSON;

CREATE FUNCTION checkpoint_action_light(action json) RETURNS json
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN json_typeof(action) <> 'object' OR action->>'type' = 'interactiveTool' THEN NULL
    WHEN NOT EXISTS (SELECT 1 FROM json_object_keys(action) AS key
      WHERE key = ANY ('{content,text,newText,oldText,result,results,items,args}'::text[])) THEN NULL
    ELSE (SELECT json_object_agg(field.key, field.value) FROM json_each(action) AS field
      WHERE field.key <> ALL ('{content,text,newText,oldText,result,results,items,args}'::text[]))
  END
$$;

CREATE FUNCTION checkpoint_set_action_light() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.action_light := checkpoint_action_light(NEW.action);
  RETURN NEW;
END
$$;

CREATE TRIGGER checkpoint_action_light BEFORE INSERT OR UPDATE OF action ON "checkpoint"
  FOR EACH ROW EXECUTE FUNCTION checkpoint_set_action_light();

UPDATE "checkpoint" SET "action_light" = checkpoint_action_light("action");
