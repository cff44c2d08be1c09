DROP TABLE prices;
DROP TABLE model_aliases;
DROP TABLE api_keys;
DROP TABLE owners;
