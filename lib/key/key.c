/* placeholder */ typedef int mc__placeholder_key;
