using System.Globalization;
using System.Text.RegularExpressions;

namespace LbAllocator.NetTests;

/// <summary>
/// Asks for one address from the client every 20 ms (one broadcast ARP request replayed by tcpreplay)
/// while tcpdump records the questions and who answers them. From that record: how long two nodes
/// answered at once, and how long nobody did.
/// </summary>
public sealed partial class ArpWatch : IDisposable
{
    /// <summary>
    /// How late a reply may come and still answer its own question, in seconds: just over one question's interval, so
    /// the end of a silence is placed at most one question early (the watch's resolution anyway).
    /// </summary>
    private const double ReplyWindow = 0.03;

    private readonly Shell.Background _capture;
    private readonly Shell.Background _asker;
    private readonly string _ip;
    private readonly string _request;

    private ArpWatch(string ip, string request, Shell.Background capture, Shell.Background asker)
    {
        _ip = ip;
        _request = request;
        _capture = capture;
        _asker = asker;
    }

    public static async Task<ArpWatch> StartAsync(Lab lab, string ip)
    {
        var client = Convert.FromHexString(lab.ClientMac.Replace(":", "", StringComparison.Ordinal));
        var question = new byte[42];
        Convert.FromHexString("ffffffffffff").CopyTo(question, 0);
        client.CopyTo(question, 6);
        Convert.FromHexString("0806" + "0001080006040001").CopyTo(question, 12);
        client.CopyTo(question, 22);
        System.Net.IPAddress.Parse(Lab.ClientIp).GetAddressBytes().CopyTo(question, 28);
        System.Net.IPAddress.Parse(ip).GetAddressBytes().CopyTo(question, 38);
        var request = Path.Combine(Path.GetTempPath(), $"lbt{Environment.ProcessId}-question.pcap");
        Pcap.Write(request, [question]);
        var capture = await Shell.CaptureAsync(lab.ClientNs, "-n", "-e", "-l", "-tt", "arp");
        // nanosleep between questions: tcpreplay's default timer spins, half a core or more of the lab's two.
        var asker = new Shell.Background("ip", ["netns", "exec", lab.ClientNs, "tcpreplay", "--pps=50", "--loop=0", "--timer=nano", "-i", "eth0", request]);
        return new ArpWatch(ip, request, capture, asker);
    }

    /// <summary>
    /// For every question: when it was asked, and the MACs that answered it. A reply answers the oldest question nobody
    /// answered yet among those asked within <see cref="ReplyWindow"/> before it, so a reply that comes after the next
    /// question (a loaded machine, or tcpreplay sending two questions back to back to catch up) still answers its own;
    /// when every question in the window has an answer, it answers the latest (two MACs answering one question).
    /// </summary>
    private List<(double At, HashSet<string> Answers)> Questions()
    {
        var questions = new List<(double At, HashSet<string> Answers)>();
        foreach (var line in _capture.Lines)
        {
            var match = Frame().Match(line);
            if (!match.Success)
            {
                continue;
            }

            var at = double.Parse(match.Groups["time"].Value, CultureInfo.InvariantCulture);
            var what = match.Groups["what"].Value;
            if (what == $"Request who-has {_ip} tell {Lab.ClientIp}")
            {
                questions.Add((at, []));
            }
            else if (what.StartsWith($"Reply {_ip} is-at ", StringComparison.Ordinal) && match.Groups["to"].Value != "ff:ff:ff:ff:ff:ff" && questions.Count > 0)
            {
                var first = questions.Count - 1;
                while (first > 0 && questions[first - 1].At >= at - ReplyWindow)
                {
                    first--;
                }

                var oldest = questions.FindIndex(first, q => q.Answers.Count == 0);
                questions[oldest >= 0 ? oldest : questions.Count - 1].Answers.Add(match.Groups["from"].Value);
            }
        }

        return questions;
    }

    /// <summary>Seconds during which questions got answers from two or more MACs, and during which they got none.</summary>
    public (double Double, double Silent, int Asked) Tally()
    {
        var questions = Questions();
        var (doubled, silent) = (0.0, 0.0);
        for (var i = 0; i + 1 < questions.Count; i++)
        {
            var span = questions[i + 1].At - questions[i].At;
            if (questions[i].Answers.Count >= 2)
            {
                doubled += span;
            }
            else if (questions[i].Answers.Count == 0)
            {
                silent += span;
            }
        }

        return (doubled, silent, questions.Count);
    }

    /// <summary>
    /// The longest time from a question nobody answered to the next answered one, in seconds (0 if every one was
    /// answered); only silences that began at or after <paramref name="from"/> and before <paramref name="until"/>
    /// when given (to tell a failover's silence from a return's).
    /// </summary>
    public double LongestSilence(DateTimeOffset? from = null, DateTimeOffset? until = null)
    {
        var first = from?.ToUnixTimeMilliseconds() / 1000.0 ?? double.MinValue;
        var last = until?.ToUnixTimeMilliseconds() / 1000.0 ?? double.MaxValue;
        var (longest, since) = (0.0, (double?)null);
        foreach (var (at, answers) in Questions())
        {
            if (answers.Count == 0)
            {
                since ??= at;
            }
            else if (since is { } start)
            {
                longest = start >= first && start < last ? Math.Max(longest, at - start) : longest;
                since = null;
            }
        }

        return longest;
    }

    /// <summary>How many questions two or more MACs answered (counted, not timed: a double answer is one too many).</summary>
    public int AnsweredTwice(DateTimeOffset? from = null)
    {
        var first = from?.ToUnixTimeMilliseconds() / 1000.0 ?? double.MinValue;
        return Questions().Count(q => q.At >= first && q.Answers.Count >= 2);
    }

    /// <summary>The questions two or more MACs answered: when (Unix seconds), and who.</summary>
    public IEnumerable<string> Doubles() =>
        Questions().Where(q => q.Answers.Count >= 2).Select(q => $"{q.At:F3} {string.Join("+", q.Answers)}");

    /// <summary>Every MAC that answered a question.</summary>
    public HashSet<string> Answerers() => [.. Questions().SelectMany(q => q.Answers)];

    /// <summary>
    /// Waits for the first question asked at or after <paramref name="since"/> that a MAC other than
    /// <paramref name="previous"/> answered; returns the seconds from <paramref name="since"/> to that question.
    /// </summary>
    public async Task<double> TakeoverAsync(string previous, DateTimeOffset since, TimeSpan timeout)
    {
        var start = since.ToUnixTimeMilliseconds() / 1000.0;
        var deadline = DateTimeOffset.UtcNow + timeout;
        while (true)
        {
            var first = Questions().FirstOrDefault(q => q.At >= start && q.Answers.Count > 0 && !q.Answers.Contains(previous));
            if (first.Answers is not null)
            {
                return first.At - start;
            }

            Assert.True(DateTimeOffset.UtcNow < deadline, $"nobody but {previous} answered {_ip} within {timeout.TotalSeconds:F0} s");
            await Task.Delay(20);
        }
    }

    public void Dispose()
    {
        _asker.Dispose();
        _capture.Dispose();
        File.Delete(_request);
    }

    // 1764093900.123456 02:aa:..:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: Request who-has 192.0.2.230 tell 192.0.2.100, length 28
    [GeneratedRegex(@"^(?<time>\d+\.\d+) (?<from>[0-9a-f:]{17}) > (?<to>[0-9a-f:]{17}), ethertype ARP \(0x0806\), length \d+: (?<what>.*?), length \d+$")]
    private static partial Regex Frame();
}
