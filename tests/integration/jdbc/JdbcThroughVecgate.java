// pgjdbc (Debian's libpostgresql-jdbc-java) through vecgate in transaction
// pooling: server-side prepared statements after prepareThreshold, batches,
// explicit transactions, errors with their SQLSTATE, several connections
// sharing few servers.  Exits non-zero with a message on the first mismatch.
//   java -cp /usr/share/java/postgresql.jar:. JdbcThroughVecgate <port> <clients>
import java.sql.*;
import java.util.*;
import java.util.concurrent.*;

public class JdbcThroughVecgate {
    static void check(boolean ok, String what) {
        if (!ok)
            throw new AssertionError(what);
    }

    static Connection open(int port) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", "app");
        p.setProperty("password", "app-pw");
        p.setProperty("prepareThreshold", "2"); // named server-side statements from the 2nd execution
        return DriverManager.getConnection("jdbc:postgresql://127.0.0.1:" + port + "/app", p);
    }

    static void work(int port, int worker) throws Exception {
        try (Connection c = open(port)) {
            // prepared statement re-executed far past prepareThreshold, across server switches
            try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 2, pg_backend_pid()")) {
                for (int i = 0; i < 50; i++) {
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next() && rs.getInt(1) == i * 2, "prepared result " + i);
                    }
                }
            }
            // batch insert in an explicit transaction, committed
            c.setAutoCommit(false);
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO jdbc_items (worker, n) VALUES (?, ?)")) {
                for (int i = 0; i < 100; i++) {
                    ins.setInt(1, worker);
                    ins.setInt(2, i);
                    ins.addBatch();
                }
                int[] counts = ins.executeBatch();
                check(counts.length == 100, "batch size");
            }
            c.commit();
            // a transaction rolled back leaves nothing
            try (Statement st = c.createStatement()) {
                st.executeUpdate("INSERT INTO jdbc_items (worker, n) VALUES (" + worker + ", -1)");
            }
            c.rollback();
            c.setAutoCommit(true);
            try (PreparedStatement q = c.prepareStatement("SELECT count(*), min(n) FROM jdbc_items WHERE worker = ?")) {
                for (int i = 0; i < 5; i++) {
                    q.setInt(1, worker);
                    try (ResultSet rs = q.executeQuery()) {
                        check(rs.next() && rs.getInt(1) == 100 && rs.getInt(2) == 0, "committed rows only");
                    }
                }
            }
            // an error keeps its SQLSTATE and the connection stays usable
            try (Statement st = c.createStatement()) {
                try {
                    st.executeQuery("SELECT 1/0");
                    check(false, "division by zero not raised");
                } catch (SQLException e) {
                    check("22012".equals(e.getSQLState()), "SQLSTATE " + e.getSQLState());
                }
                try (ResultSet rs = st.executeQuery("SELECT 'still here'")) {
                    check(rs.next() && rs.getString(1).equals("still here"), "after error");
                }
            }
        }
    }

    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        int clients = Integer.parseInt(args[1]);
        try (Connection c = open(port); Statement st = c.createStatement()) {
            st.execute("DROP TABLE IF EXISTS jdbc_items");
            st.execute("CREATE TABLE jdbc_items (worker int, n int)");
        }
        ExecutorService pool = Executors.newFixedThreadPool(clients);
        List<Future<?>> fs = new ArrayList<>();
        for (int w = 0; w < clients; w++) {
            final int worker = w;
            fs.add(pool.submit(() -> { work(port, worker); return null; }));
        }
        for (Future<?> f : fs)
            f.get(120, TimeUnit.SECONDS);
        pool.shutdown();
        try (Connection c = open(port); Statement st = c.createStatement();
             ResultSet rs = st.executeQuery("SELECT count(*) FROM jdbc_items")) {
            check(rs.next() && rs.getInt(1) == 100 * clients, "total rows");
        }
        System.out.println("jdbc: " + clients + " clients ok");
    }
}
