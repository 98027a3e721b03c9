/* placeholder */ typedef int mc__placeholder_table;
