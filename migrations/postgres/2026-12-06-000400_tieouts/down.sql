DROP TABLE tieouts;
