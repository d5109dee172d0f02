-- 0004: a reader may pause their newsletters from the preference page.
-- The same column as SQLite's 0004: NULL (or a time already past) means not
-- paused. Digests skip readers with paused_until > now.
-- A shipped migration is never edited: add 0005 instead.

ALTER TABLE subscribers ADD COLUMN paused_until timestamptz;
